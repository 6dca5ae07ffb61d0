"""A task back from a checkpoint: built from its config, only from trusted classes, with its weights.

:func:`instantiate_task` builds a LightningModule from a ``{"class_path", "init_args"}`` config the
way LightningCLI does, after the trust check of ``_trust.py``; :func:`load_pretrained` does it for
a checkpoint folder (:mod:`zoo.registry._checkpoint`) and :func:`load_run` for a training run, each
loading the weights strictly; a published model also gets its :class:`ElementGuard` and
:class:`Provenance`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.registry._checkpoint import read_config, read_weights
from zoo.registry._errors import CheckpointFormatError, UnsupportedElementsError
from zoo.registry._manifest import CONFIG_FILE, WEIGHTS_FILE, ModelInfo
from zoo.registry._trust import check_trusted

log = logging.getLogger("zoo.registry")


def _cannot_build(config: Mapping[str, Any], error: Exception) -> CheckpointFormatError:
    return CheckpointFormatError(
        f"could not build {config.get('class_path')} from its config: {error}. The checkpoint may need a "
        "newer zoo, or the package that defines this class."
    )


def instantiate_task(config: Mapping[str, Any], trust_remote_code: bool = False, trusted_modules: Sequence[str] = (),
                     where: str = "task") -> torch.nn.Module:
    """Build a LightningModule from ``{"class_path", "init_args"}`` the way LightningCLI does.

    Its ``hparams`` hold the full config, defaults included (not the objects built from it), as
    under LightningCLI: the task can be saved again and its Lightning checkpoints stay loadable.

    Args:
        trust_remote_code: build whatever the config names. By default it may name only zoo's
            classes and torch.optim's optimizers and schedulers (``zoo/registry/_trust.py``), and
            anything else is an :class:`UntrustedCodeError` before it is imported.
        trusted_modules: module prefixes to trust besides those, e.g. ``("mylab",)``.
        where: what the config is, for messages.
    """
    import lightning.pytorch as pl
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

    check_trusted(config, where, trust_remote_code, trusted_modules)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(pl.LightningModule, "task", fail_untyped=False)
    try:
        # jsonargparse turns nested dicts into Namespaces in place: parse a copy
        parsed = parser.parse_object({"task": copy.deepcopy(dict(config))})
        full = yaml.safe_load(parser.dump(parsed, skip_unset=False, skip_link_targets=False))["task"]
    except Exception as error:
        raise _cannot_build(config, error) from error
    # jsonargparse resolves a bare class name to any class imported so far: check what it will build
    check_trusted(full, where, trust_remote_code, trusted_modules, strings=False)
    hparams = {"_class_path": full["class_path"], **full.get("init_args", {})}
    try:
        # LightningCLI records hparams through this same context (its _InstantiatorFn); without it,
        # save_hyperparameters would store the nn.Modules it receives instead of their config.
        with _given_hyperparameters_context(hparams=hparams, instantiator="lightning.pytorch.cli.instantiate_module"):
            return parser.instantiate(parsed).task
    except Exception as error:
        raise _cannot_build(config, error) from error




@dataclass(frozen=True)
class Provenance:
    """Where a loaded model came from; attached to it as ``task.registry_info``."""

    name: str
    source: str
    folder: Path
    info: ModelInfo
    config: dict[str, Any]


class ElementGuard:
    """Forward pre-hook: a batch with elements the model was not trained on is a clear error."""

    def __init__(self, name: str, elements: list[str]):
        from ase.data import atomic_numbers

        self.name = name
        self.elements = list(elements)
        self.allowed = torch.tensor([atomic_numbers[e] for e in elements])

    def __call__(self, module, args):
        batch = args[0] if args else None
        if batch is None or not hasattr(batch, "keys") or "z" not in batch.keys():
            return None
        if torch.compiler.is_compiling():  # traced (torch.export): the model's ElementIndex checks in the graph
            return None
        z = batch["z"]
        unknown = z[~torch.isin(z, self.allowed.to(z.device))]
        if unknown.numel():
            from ase.data import chemical_symbols

            symbols = sorted({chemical_symbols[int(n)] for n in unknown.unique()})
            raise UnsupportedElementsError(
                f"model {self.name!r} was trained on {', '.join(self.elements)} and cannot predict for "
                f"{', '.join(symbols)}. Use a model that knows them (zoo list), or fine-tune this one on "
                f"data with them: zoo fit --config <recipe> --model.pretrained {self.name} with the "
                "backbone's elements extended"
            )
        return None


def load_run(run: str | Path, checkpoint: str = "last", device: str | torch.device = "cpu",
             trust_remote_code: bool = False, trusted_modules: Sequence[str] = (),
             dtype: torch.dtype | str | None = None) -> torch.nn.Module:
    """The task of a training run (``zoo fit``'s log folder), with a checkpoint's weights, in eval mode.

    Args:
        run: the run's folder (``runs/<recipe>/version_N``, with the ``config.yaml`` LightningCLI
            saved) or a checkpoint file in its ``checkpoints/``.
        checkpoint: with a folder, which checkpoint: ``"last"`` or ``"best"`` (its EMA weights
            where the run averaged them), or a file name in ``checkpoints/``.
        trust_remote_code, trusted_modules: as for :func:`instantiate_task`.

    The checkpoint is read as tensors only (``torch.load(weights_only=True)``): nothing it holds
    is executed. For a model to publish, export it with :func:`save_pretrained` instead.

    Raises:
        CheckpointFormatError: no ``config.yaml`` or checkpoint, or weights that do not fit the
            task the config builds.
        dtype: as for :func:`load_pretrained`.
    """
    import yaml

    path = Path(run)
    if path.is_file():
        file, folder = path, path.parent.parent
    else:
        folder = path
        file = folder / "checkpoints" / (checkpoint if checkpoint.endswith(".ckpt") else f"{checkpoint}.ckpt")
    config_file = folder / "config.yaml"
    for needed, what in ((config_file, "the config LightningCLI saves with a run"), (file, "the checkpoint")):
        if not needed.is_file():
            raise CheckpointFormatError(f"{needed} does not exist ({what}); give a zoo fit run folder "
                                        "(runs/<recipe>/version_N) or a checkpoint file inside it")
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    task = instantiate_task(config["model"], trust_remote_code, trusted_modules, where=f"{config_file}: model")
    state = torch.load(file, map_location="cpu", weights_only=True)["state_dict"]
    _load_weights(task, state, f"{file} does not match the task {config_file} builds")
    return _for_inference(task, device, dtype)


def _for_inference(task: torch.nn.Module, device: str | torch.device, dtype: torch.dtype | str | None):
    """``task`` in eval mode on ``device``, in ``dtype`` if given (else the weights')."""
    from zoo.data.dataset import resolve_dtype

    task.eval().to(device)
    if dtype is not None:
        task.to(resolve_dtype(dtype))
    return task


def _load_weights(task: torch.nn.Module, state: dict[str, torch.Tensor], mismatch: str) -> None:
    """Load ``state`` strictly into ``task``, first converting the task to the weights' floating
    dtype: a model trained in float64 (e.g. a Hamiltonian) is built in torch's default dtype and
    would otherwise have its weights rounded to float32. ``mismatch`` starts the error message."""
    floating = {v.dtype for v in state.values() if v.is_floating_point()}
    if len(floating) == 1:
        task.to(floating.pop())
    try:
        task.load_state_dict(state, strict=True)
    except RuntimeError as error:  # missing, unexpected or differently shaped tensors
        raise CheckpointFormatError(f"{mismatch}: {error}") from None


def load_pretrained(folder: str | Path, device: str | torch.device = "cpu", name: str | None = None,
                    source: str = "local folder", trust_remote_code: bool = False,
                    trusted_modules: Sequence[str] = (), dtype: torch.dtype | str | None = None) -> torch.nn.Module:
    """Build the task a checkpoint folder describes, load its weights, and put it in eval mode.

    The task takes the floating dtype of its weights (float64 models stay float64), or ``dtype``
    (``torch.float64`` or ``"float64"`` casts a float32 checkpoint, and the reverse). Its config
    may name only zoo's classes and torch.optim's optimizers and schedulers, unless
    ``trust_remote_code=True`` (or ``trusted_modules``, see :func:`instantiate_task`): anything
    else is an :class:`UntrustedCodeError`, raised before it is imported.

    The task's model refuses batches with elements outside its ``elements`` (an
    :class:`UnsupportedElementsError`), on every path: the task's forward, ``task.predict``, the
    calculator, the model called directly. The task carries a :class:`Provenance` as
    ``task.registry_info``.
    """
    folder = Path(folder)
    config, info = read_config(folder)
    if config["task"].get("init_args", {}).get("pretrained") is not None:
        # fitting the task would fetch that model (a name, a Hub repo, any folder) over its own weights
        raise CheckpointFormatError(
            f"{folder / CONFIG_FILE}: task.init_args.pretrained is set; a checkpoint names its parent as "
            "finetuned_from instead (save_pretrained clears pretrained). Re-export the model with save_pretrained"
        )
    state = read_weights(folder)
    task = instantiate_task(config["task"], trust_remote_code, trusted_modules, where=f"{folder / CONFIG_FILE}: task")
    _load_weights(task, state, f"{folder / WEIGHTS_FILE} does not match the task built from {CONFIG_FILE}: the "
                               f"code that defines {config['task']['class_path']} changed since zoo "
                               f"{config.get('zoo_version')} wrote it")
    _for_inference(task, device, dtype)
    # on the model when the task has one, which every way of running it goes through
    guarded = task.get_submodule("model") if "model" in config["task"].get("init_args", {}) else task
    guarded.register_forward_pre_hook(ElementGuard(name or info.name, info.elements))
    task.registry_info = Provenance(name or info.name, source, folder, info, config)
    log.info("loaded %r from %s (%s)", name or info.name, folder, source)
    return task
