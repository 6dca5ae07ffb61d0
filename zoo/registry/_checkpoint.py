"""The checkpoint format: a folder in Hub layout, ``config.json`` + ``model.safetensors`` + ``README.md``.

``config.json`` holds the format name and version, the zoo version that wrote it, the task as a
LightningCLI config (``class_path``/``init_args``) and the model's :class:`ModelInfo` (elements,
units, level of theory, ...). ``model.safetensors`` holds the task's ``state_dict``: tensors only,
so loading never unpickles anything. Formats are versioned (see CHANGELOG.md next to this file);
:func:`upgrade_config` is the one place that reads older versions, :func:`check_format_version` the
one that refuses newer ones. This module writes and reads the folder; building the task it
describes (only from trusted classes) is :mod:`zoo.registry._restore`.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from zoo._files import atomic_path, exclusive_output
from zoo.registry._cards import render_card
from zoo.registry._errors import CheckpointFormatError, ManifestError
from zoo.registry._manifest import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, ModelInfo, upgrade_level_of_theory

log = logging.getLogger("zoo.registry")

FORMAT = "zoo-checkpoint"
#: The version this zoo writes; CHANGELOG.md says what each version changed.
FORMAT_VERSION = 2

#: The arguments of a format-1 ``HamiltonianModel`` that are now the fields of its ``level``.
_HAMILTONIAN_LEVEL_ARGS = ("method", "xc", "basis", "grid_level", "density_fitting", "charge")


def _one_level_of_theory(config: dict) -> dict:
    """Format 1 -> 2: the card's level of theory and a ``HamiltonianModel``'s are a :class:`LevelOfTheory`.

    The card's ``{xc, basis, grid, code}`` becomes the record's fields
    (:func:`~zoo.registry._manifest.upgrade_level_of_theory`), and the flat level arguments of a
    ``HamiltonianModel`` anywhere in the task config its ``level`` argument.
    """
    def nest(node):
        if isinstance(node, list):
            return [nest(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = {key: nest(value) for key, value in node.items()}
        if str(node.get("class_path", "")).rsplit(".", 1)[-1] == "HamiltonianModel" and "init_args" in node:
            args = dict(node["init_args"])
            level = {key: args.pop(key) for key in _HAMILTONIAN_LEVEL_ARGS if key in args}
            node["init_args"] = {**args, "level": level} if level else args
        return node

    config = {**config, "task": nest(config.get("task"))}
    if "level_of_theory" in config:
        config["level_of_theory"] = upgrade_level_of_theory(config["level_of_theory"])
    return config


#: ``{v: f}`` where ``f`` turns a version-``v`` config into version ``v + 1``. Add an entry (and a
#: CHANGELOG line) whenever FORMAT_VERSION is bumped, so that every older checkpoint stays readable.
_UPGRADES: dict[int, Callable[[dict], dict]] = {1: _one_level_of_theory}

#: Keys of ``config.json`` besides the :class:`ModelInfo` fields.
_FORMAT_KEYS = ("format", "format_version", "zoo_version", "task", "finetuned_from")


def _zoo_version() -> str:
    from zoo import __version__

    return __version__


def check_format_version(version: int, what: str, zoo_versions: str) -> None:
    """Refuse a checkpoint format newer than :data:`FORMAT_VERSION`, saying which zoo reads it.

    The one check of a format version: :func:`upgrade_config` makes it on every ``config.json`` it
    reads, and the registry on a manifest entry's ``checkpoint_format``, before downloading anything.
    """
    if version > FORMAT_VERSION:
        raise CheckpointFormatError(
            f"{what} uses checkpoint format {version}; the installed zoo {_zoo_version()} reads formats up to "
            f"{FORMAT_VERSION}. Upgrade: pip install -U 'zoo{zoo_versions}'"
        )


def upgrade_config(config: Mapping[str, Any], source: str = CONFIG_FILE) -> dict[str, Any]:
    """Bring a checkpoint config to :data:`FORMAT_VERSION`, or say which zoo reads it.

    Older formats go through :data:`_UPGRADES` one version at a time; a newer format is a
    :class:`CheckpointFormatError` naming the zoo version that wrote it.
    """
    if not isinstance(config, Mapping) or config.get("format") != FORMAT:
        got = config.get("format") if isinstance(config, Mapping) else type(config).__name__
        raise CheckpointFormatError(f"{source} is not a zoo checkpoint (format {got!r}, expected {FORMAT!r})")
    version = config.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointFormatError(f"{source}: format_version must be a positive integer, got {version!r}")
    writer = config.get("zoo_version", "unknown")
    check_format_version(version, f"{source} (written by zoo {writer})", f">={writer}")
    config = dict(config)
    while version < FORMAT_VERSION:
        config = _UPGRADES[version](config)
        version += 1
        config["format_version"] = version
    return config


def read_config(folder: str | Path) -> tuple[dict[str, Any], ModelInfo]:
    """The upgraded ``config.json`` of a checkpoint folder and its :class:`ModelInfo`."""
    path = Path(folder) / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointFormatError(
            f"{Path(folder)} is not a zoo checkpoint: no {CONFIG_FILE} (expected Hub layout: "
            f"{CONFIG_FILE}, {WEIGHTS_FILE}, {CARD_FILE}; write one with zoo.registry.save_pretrained)"
        ) from None
    except json.JSONDecodeError as error:
        raise CheckpointFormatError(f"{path}: not valid JSON: {error}") from None
    config = upgrade_config(config, str(path))
    task = config.get("task")
    if not isinstance(task, dict) or not isinstance(task.get("class_path"), str):
        raise CheckpointFormatError(f"{path}: 'task' must be a LightningCLI config with a class_path")
    try:
        info = ModelInfo.from_dict({k: v for k, v in config.items() if k not in _FORMAT_KEYS}, str(path))
    except ManifestError as error:
        raise CheckpointFormatError(str(error)) from None
    return config, info


# ---------------------------------------------------------------------------------------------
# the task's config


def task_config(task: torch.nn.Module) -> dict[str, Any]:
    """The ``{"class_path", "init_args"}`` config a task was built from (by LightningCLI or
    :func:`~zoo.registry._restore.instantiate_task`), from its ``hparams``."""
    hparams = copy.deepcopy(dict(getattr(task, "hparams", {})))
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if class_path is None:
        raise CheckpointFormatError(
            f"this {type(task).__name__} was built in Python, so its hparams hold objects rather than a "
            "config; build it from a config (LightningCLI or zoo.registry.instantiate_task) or pass "
            "config={'class_path': ..., 'init_args': ...} to save_pretrained"
        )
    return {"class_path": class_path, "init_args": hparams}


def _class_name(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _architecture(node: Any) -> str | None:
    """``"PropertyModel(EquivariantBackbone)"`` from the nested class_paths of a model config."""
    if not isinstance(node, dict) or "class_path" not in node:
        return None
    inner = [a for v in node.get("init_args", {}).values() if (a := _architecture(v))]
    return _class_name(node["class_path"]) + (f"({', '.join(inner)})" if inner else "")


def _find_elements(node: Any) -> list[str] | None:
    """The first ``elements`` argument anywhere in a config (the backbone's, in practice)."""
    if isinstance(node, dict):
        if isinstance(node.get("elements"), list):
            return node["elements"]
        for value in node.values():
            if (found := _find_elements(value)) is not None:
                return found
    if isinstance(node, list):
        for value in node:
            if (found := _find_elements(value)) is not None:
                return found
    return None


def _symbols(elements: list) -> list[str]:
    from ase.data import chemical_symbols

    return [chemical_symbols[e] if isinstance(e, int) else e for e in elements]


# ---------------------------------------------------------------------------------------------
# writing and reading a folder


def save_pretrained(
    task: torch.nn.Module,
    folder: str | Path,
    card_info: ModelInfo | Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``task`` as a checkpoint folder in Hub layout; returns the folder.

    Args:
        task: a LightningModule built from a config (LightningCLI or
            :func:`~zoo.registry._restore.instantiate_task`).
        folder: created if needed; ``config.json``, ``model.safetensors`` and ``README.md`` are
            (over)written, each atomically, under the folder's single-writer lock (a second
            writer gets :class:`~zoo._files.OutputBusyError`; the lock file ``<folder>.lock``
            stays beside it).
        card_info: a :class:`ModelInfo` or its fields as a dict. ``elements`` and
            ``architecture`` are taken from the task config when left out.
        config: the task's ``{"class_path", "init_args"}``, for tasks not built from a config.

    A ``pretrained`` init argument (the registry model a fine-tune started from) is recorded as
    ``finetuned_from`` and cleared, so that loading the result never re-downloads its parent.
    """
    config = dict(config) if config is not None else task_config(task)
    init_args = dict(config.get("init_args", {}))
    finetuned_from = init_args.get("pretrained")
    if finetuned_from is not None:
        init_args["pretrained"] = None
    config = {"class_path": config["class_path"], "init_args": init_args}
    try:
        json.dumps(config)
    except TypeError as error:
        raise CheckpointFormatError(f"the task config is not JSON-serialisable ({error}); pass config=") from None

    info = dict(card_info.to_dict() if isinstance(card_info, ModelInfo) else card_info)
    if info.get("elements") is None and (elements := _find_elements(config)) is not None:
        info["elements"] = _symbols(elements)
    if info.get("architecture") is None:
        info["architecture"] = _architecture(init_args.get("model")) or _class_name(config["class_path"])
    info = ModelInfo.from_dict(info, "card_info")

    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "zoo_version": _zoo_version(),
        **info.to_dict(),
        "task": config,
        **({"finetuned_from": finetuned_from} if finetuned_from else {}),
    }
    folder = Path(folder)
    # clone: safetensors refuses tensors that share storage (views, tied weights)
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in task.state_dict().items()}
    with exclusive_output(folder.resolve(), "model folder"):
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / CONFIG_FILE) as tmp:
            tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        with atomic_path(folder / WEIGHTS_FILE) as tmp:
            save_file(state, tmp, metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
        with atomic_path(folder / CARD_FILE) as tmp:
            tmp.write_text(render_card(info, document), encoding="utf-8")
    return folder


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The state_dict in a checkpoint folder (safetensors: tensors only, nothing unpickled)."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointFormatError(f"{Path(folder)} has no {WEIGHTS_FILE}")
    try:
        return load_file(path, device="cpu")
    except Exception as error:  # safetensors raises its own error types for a damaged header
        raise CheckpointFormatError(f"{path} is not a readable safetensors file: {error}") from error
