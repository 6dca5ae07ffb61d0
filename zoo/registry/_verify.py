"""Does a published model still meet its card? Reload it and recompute every test metric.

A card's metrics are what :class:`zoo.callbacks.ExportPretrained` logged in ``zoo test`` on the
test split of the model's recipe. :func:`verify_model` reloads the model through the registry
(sha256-checked), rebuilds that recipe's data module, runs Lightning's test loop once more and
compares each metric with the card.
"""

from __future__ import annotations

import importlib
import math
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zoo.registry._errors import RegistryError
from zoo.registry._trust import check_trusted

#: Default tolerance: relative to the card's value. Float32 reductions differ with the CPU's vector
#: width, and an energy MAE of about 1 meV on total energies of thousands of eV (float32 resolution
#: ~5e-4 eV) moves by ~0.5 % between machines (malonaldehyde-dens-pbe-def2svp-v2: 0.4 %, AVX2
#: against AVX-512); a card that claims a 10 % lower error still fails.
RELATIVE_TOLERANCE = 1e-2
#: Cards written before zoo 0.1 rounded metrics to 6 decimals rather than 6 significant digits.
_CARD_ROUNDING = 5e-7


class VerificationError(RegistryError):
    """A model cannot be verified (no recipe, no data), as opposed to one that fails its card."""


class MissingDataError(VerificationError):
    """The recipe's data files are not in this checkout: too big to commit, they are made by a command."""


@dataclass
class Verification:
    """The card's and the recomputed value of each test metric of one model."""

    name: str
    recipe: str
    card: dict[str, float]
    measured: dict[str, float]
    tolerance: float
    failed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def table(self) -> str:
        lines = [f"{self.name} ({self.recipe}): {'meets its card' if self.ok else 'FAILS its card'}"]
        for key, expected in self.card.items():
            value = self.measured.get(key, math.nan)
            mark = "FAIL" if key in self.failed else "ok"
            lines.append(f"  {key:32s} card {expected:<14.6g} measured {value:<14.6g} {mark}")
        return "\n".join(lines)


def _data_section(info, root: Path, trust_remote_code: bool, trusted_modules: Sequence[str]):
    """The ``data`` config of the recipe ``info`` names, its bases merged in as ``zoo fit`` merges them."""
    from jsonargparse import ArgumentParser

    from zoo import recipes
    from zoo.data import AtomicDataModule

    if not info.recipe:
        raise VerificationError(f"{info.name}: its card names no recipe")
    try:
        files = recipes.chain(info.recipe, relative_to=root)
    except recipes.RecipeError as error:
        raise VerificationError(f"{info.name}: its card names recipe {info.recipe!r}: {error}") from error
    outside = [file for file in files if not file.resolve().is_relative_to(root.resolve())
               and not file.resolve().is_relative_to(recipes.folder().resolve())]
    if outside:
        raise VerificationError(f"{info.name}: its recipe {info.recipe} reads {', '.join(map(str, outside))}, "
                                f"neither in {root} nor a packaged recipe")
    sections = [(file, recipes.read(file).get("data")) for file in files]
    sections = [(file, section) for file, section in sections if section]
    if not sections:
        raise VerificationError(f"{info.name}: its recipe {info.recipe} has no data section")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(AtomicDataModule, "data", required=True)
    config = None
    for file, section in sections:
        # before jsonargparse imports what the section names
        check_trusted(section, f"{file}: data", trust_remote_code, trusted_modules, strings=False)
        config = parser.parse_object({"data": section}, namespace=config, defaults=config is None)
    return config.data


def _data_module(config, arguments: dict):
    """The data module of a checked :func:`_data_section`, built with ``arguments``."""
    module, _, name = config.class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**arguments)


def recipe_test_set(info, root: str | Path | None = None, trust_remote_code: bool = False,
                    trusted_modules: Sequence[str] = ()):
    """The test set of the recipe a model card names when the recipe reads it from a file of its own
    (``test_source``): an :class:`~zoo.data.AtomicDataset`, read as the recipe's data module reads
    it, without the training data (which may be too big to commit). Arguments as
    :func:`recipe_datamodule`.

    Raises:
        MissingDataError: the recipe's test set is a split of its training data, or its file is
            not under ``root``.
    """
    root = Path(root) if root is not None else Path.cwd()
    config = _data_section(info, root, trust_remote_code, trusted_modules)
    arguments = config.init_args.as_dict()
    source = arguments.get("test_source")
    if source is None:
        raise MissingDataError(f"{info.name}: the test set of {info.recipe} is a split of its training data; "
                               "read it with recipe_datamodule")
    if not (root / source).exists():
        raise MissingDataError(f"{info.name}: the test set of {info.recipe} ({source}) is not in {root}; make it "
                               "with the command data/README.md gives")
    return _data_module(config, {**arguments, "test_source": str(root / source)}).read_test_source()


def recipe_datamodule(info, split_dir: str | Path, root: str | Path | None = None, trust_remote_code: bool = False,
                      trusted_modules: Sequence[str] = ()):
    """The data module of the recipe a model card names (not set up), its split saved in ``split_dir``.

    The card names its recipe as ``zoo fit --config`` takes it (:mod:`zoo.recipes`): a file under
    ``root`` if there is one, else the packaged recipe; an overlay's bases are merged in. The
    recipe's data paths are relative to ``root`` (default: the working folder, as for ``zoo
    test``) and made absolute against it. The card chooses the recipe, so its data class (of every
    file that gives one) must pass the allow-list of :func:`~zoo.registry.check_trusted`
    (``trust_remote_code``, ``trusted_modules`` as there).

    Raises:
        VerificationError: the card names no recipe, or one that does not exist or has no data.
        MissingDataError: a data file the recipe names (a path with a folder) is not under
            ``root``; data/README.md gives the command that makes it.
        UntrustedCodeError: the recipe's data class is not trusted.
    """
    root = Path(root) if root is not None else Path.cwd()
    config = _data_section(info, root, trust_remote_code, trusted_modules)
    arguments = config.init_args.as_dict()

    def paths(value) -> list[str]:
        # a data argument's file paths: one, a list of them (source: [a, b]), or a multi-fidelity
        # source's entries ({source, level, reader_kwargs})
        values = value if isinstance(value, list) else [value]
        values = [v["source"] if isinstance(v, dict) and "source" in v else v for v in values]
        return [v for v in values if isinstance(v, str) and "/" in v and Path(v).suffix]

    def rooted(value):
        if isinstance(value, list):
            return [rooted(item) for item in value]
        if isinstance(value, dict) and "source" in value:
            return {**value, "source": rooted(value["source"])}
        return str(root / value) if isinstance(value, str) and (root / value).exists() else value

    missing = [path for value in arguments.values() for path in paths(value) if not (root / path).exists()]
    if missing:
        raise MissingDataError(f"{info.name}: the data of {info.recipe} ({', '.join(missing)}) are not in {root}; "
                               "they are too big to commit: make them with the command data/README.md gives "
                               "(or verify from the folder that has them)")
    arguments = {key: rooted(value) for key, value in arguments.items()}
    return _data_module(config, {**arguments, "split_dir": str(split_dir)})


def verify_model(name: str, tolerance: float = RELATIVE_TOLERANCE, root: str | Path | None = None,
                 **load_kwargs) -> Verification:
    """Reload ``name`` with :func:`zoo.load` and recompute its card's test metrics.

    Args:
        name: a registry name (or anything :func:`zoo.load` takes).
        tolerance: largest accepted ``|measured - card| / |card|`` (at least the card's rounding).
        root: the folder the recipe's data paths are relative to (default: the working folder, as
            for ``zoo test``): a source checkout, with its ``data/``.
        load_kwargs: passed to :func:`zoo.load` (``cache_dir``, ``manifest``, ``trust_remote_code``, ...);
            the trust options apply to the recipe's data class too.
    """
    import lightning.pytorch as pl

    import zoo
    from zoo._lightning_noise import ignore_lightning_noise

    task = zoo.load(name, **load_kwargs)
    trust = {key: load_kwargs[key] for key in ("trust_remote_code", "trusted_modules") if key in load_kwargs}
    info = task.registry_info.info
    card = {key: float(value) for key, value in (info.metrics or {}).get("values", {}).items()}
    if not card:
        raise VerificationError(f"{name}: its card has no test metrics to verify")
    with tempfile.TemporaryDirectory() as split_dir:
        datamodule = recipe_datamodule(info, split_dir, root, **trust)
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False)
        with warnings.catch_warnings():
            ignore_lightning_noise()
            results = trainer.test(task, datamodule=datamodule, verbose=False)[0]
    measured = {key.removeprefix("test/"): float(value) for key, value in results.items()}
    failed = [key for key, expected in card.items()
              if key not in measured or not abs(measured[key] - expected) <= max(tolerance * abs(expected), _CARD_ROUNDING)]
    return Verification(name, info.recipe, card, measured, tolerance, failed)
