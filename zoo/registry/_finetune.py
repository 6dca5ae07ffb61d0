"""Fine-tuning from a registry model: start a task from its weights.

``--ckpt_path`` keeps its Lightning meaning (resume a run, optimizer and all); starting a new run
from a published model goes through :func:`load_pretrained_weights`, which copies every tensor whose
name and shape match and leaves the rest (new output heads, re-fitted per-element references) at
their initialisation. :class:`zoo.callbacks.FreezeBackbone` then keeps the backbone fixed for the
first epochs.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from lightning.pytorch.utilities import rank_zero_info

from zoo.registry._checkpoint import _find_elements, _symbols, read_config, read_weights
from zoo.registry._errors import CheckpointFormatError
from zoo.registry._load import resolve
from zoo.registry._manifest import Manifest

log = logging.getLogger("zoo.registry")


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_pretrained_weights` did, by state_dict key, and where the weights came from."""

    source: str
    loaded: list[str]
    missing: list[str]  # in the task, not in the checkpoint: left at initialisation
    unexpected: list[str]  # in the checkpoint, not in the task
    mismatched: list[str]  # in both, with different shapes: left at initialisation
    excluded: list[str]  # skipped on request
    #: each target of the task's per-target heads and the checkpoint's target its rows came from
    #: (``None``: left at initialisation); see :class:`RowsPerTarget`
    heads: dict[str, str | None] = field(default_factory=dict)


@runtime_checkable
class RowsPerTarget(Protocol):
    """A model some of whose tensors hold one row per predicted target (an output layer, the
    targets' scale and shift, their per-element references). A fine-tune to other targets, or to
    other levels of theory of a multi-fidelity force field, then takes each target's rows from the
    checkpoint by name instead of starting the whole head at its initialisation.
    :class:`zoo.models.PropertyModel` and :class:`zoo.models.ForceFieldModel` are such models.
    """

    targets: list[str]
    #: names, within the model, of the tensors whose first dimension runs over ``targets``
    per_target_tensors: tuple[str, ...]

    def checkpoint_targets(self, init_args: Mapping[str, Any]) -> list[str]:
        """The targets, in row order, of a model of this class built with ``init_args``."""

    def start_target(self, target: str, checkpoint_targets: Sequence[str]) -> str | None:
        """The checkpoint's target whose rows ``target`` starts from, or ``None``."""


def load_pretrained_weights(
    task: torch.nn.Module,
    ref: str | Path,
    strict: bool = False,
    exclude: Sequence[str] = (),
    required: Sequence[str] = (),
    manifest: Manifest | str | Path | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
) -> LoadReport:
    """Initialise ``task`` from the weights of the registry model ``ref`` (name, hf:// or folder).

    Only the checkpoint's tensors and metadata are read: the classes its config names are never
    imported (the task is the caller's), so no trust option is needed here.

    Under ``torch.distributed`` one rank per node downloads and the others wait, so call it after
    the process group is up (in ``setup``), not in ``__init__``.

    Args:
        strict: require the task and the checkpoint to have exactly the same tensors and elements
            (a plain continuation of training); by default partial matches are loaded and reported.
        exclude: glob patterns of keys (as the task names them) to leave at their initialisation,
            e.g. ``["model.rescale.*", "model.reference_energies.*"]`` to re-fit the statistics, or
            ``["model.readout.*"]`` for a new head.
        required: glob patterns of keys that must all be loaded, e.g. ``["model.backbone.*"]``: a
            fine-tune whose backbone differs from the pretrained one (another size, new elements)
            is then an error rather than a run that starts from scratch under a pretrained name.
    """
    resolved = resolve(ref, manifest, cache_dir, token)
    config, info = read_config(resolved.folder)
    source = _as_loaded(task, read_weights(resolved.folder))
    target = task.state_dict()
    excluded = sorted(k for k in source if any(fnmatch.fnmatchcase(k, p) for p in exclude))
    heads = _rows_by_target(task, config["task"], source, target, excluded)
    mismatched = [f"{k}: {tuple(v.shape)} -> {tuple(target[k].shape)}" for k, v in source.items()
                  if k in target and k not in excluded and v.shape != target[k].shape]
    candidate = {k: v for k, v in source.items()
                 if k not in excluded and (k not in target or v.shape == target[k].shape)}
    # missing and unexpected tensors as load_state_dict sees them, after the modules' own upgrade
    # hooks (an older checkpoint without a training domain, say); undone below if refused
    before = {k: v.detach().clone() for k, v in target.items()}
    report = task.load_state_dict(candidate, strict=False)
    unexpected = list(report.unexpected_keys)
    missing = [k for k in report.missing_keys if k not in source]  # excluded and reshaped ones are reported as such
    loaded = {k: v for k, v in candidate.items() if k not in unexpected}
    task_elements = _find_elements(dict(getattr(task, "hparams", {})))
    new_elements = sorted(set(_symbols(task_elements)) - set(info.elements)) if task_elements else []

    problems = []
    if new_elements:
        problems.append(f"the task adds elements {new_elements} that {resolved.name!r} was not trained on "
                        f"(it knows {', '.join(info.elements)}); tensors sized by the element list start fresh")
    for what, keys in (("missing from the checkpoint", missing), ("not in the task", unexpected),
                       ("of another shape", mismatched)):
        if keys:
            problems.append(f"{len(keys)} tensors {what}: {', '.join(keys[:6])}{', ...' if len(keys) > 6 else ''}")
    moved = ", ".join(f"{head} from {start}" if start else f"{head} at its initialisation"
                      for head, start in heads.items() if start != head)
    not_loaded = sorted(k for k in target if any(fnmatch.fnmatchcase(k, p) for p in required) and k not in loaded)
    if not_loaded:
        task.load_state_dict(before, strict=False)
        raise CheckpointFormatError(
            f"cannot start {type(task).__name__} from {resolved.name!r}: {len(not_loaded)} tensors that must come from "
            f"it ({', '.join(required)}) do not fit: {', '.join(not_loaded[:6])}{', ...' if len(not_loaded) > 6 else ''}"
            + (f" ({'; '.join(problems)})" if problems else "") + f". Build the task with {resolved.name!r}'s "
            f"architecture (its config.json: elements {', '.join(info.elements)}, backbone sizes) and change only "
            "the heads")
    if strict and (problems or excluded or moved):
        task.load_state_dict(before, strict=False)
        raise CheckpointFormatError(
            f"cannot load {resolved.name!r} strictly into {type(task).__name__}: "
            + "; ".join(problems + ([f"other heads ({moved})"] if moved else []))
            + (f"; excluded {excluded}" if excluded else "") + ". Use strict=False to load the tensors that match."
        )
    # among Lightning's start-up messages, which are shown by default, and once: on rank zero
    rank_zero_info(f"zoo: initialised {type(task).__name__} from the pretrained weights of {resolved.name!r} "
                   f"({resolved.source}): {len(loaded)} of {len(target)} tensors"
                   + (f"; heads: {moved}" if moved else ""))
    for problem in problems:
        log.warning("fine-tuning from %r: %s", resolved.name, problem)
    return LoadReport(resolved.source, sorted(loaded), missing, unexpected, mismatched, excluded, heads)


def _rows_by_target(task: torch.nn.Module, task_config: Mapping, source: dict[str, torch.Tensor],
                    target: dict[str, torch.Tensor], excluded: Sequence[str]) -> dict[str, str | None]:
    """Rebuild, in ``source``, the per-target tensors of the task's :class:`RowsPerTarget` models in
    the task's target order: each row from the checkpoint's row of the target it starts from, the
    task's initialisation where none. The checkpoint's targets come from its config (read as data:
    only a model of the same zoo class counts). Returns each task target and where it starts."""
    heads = {}
    for name, module in task.named_modules():
        init_args = _config_of(task_config, name, module) if isinstance(module, RowsPerTarget) else None
        if init_args is None:
            continue
        available = module.checkpoint_targets(init_args)
        starts = {head: module.start_target(head, available) for head in module.targets}
        heads.update(starts)
        if list(module.targets) == available:
            continue  # the same heads in the same order: loaded as they are
        for tensor in module.per_target_tensors:
            key = f"{name}.{tensor}"
            if key in excluded or key not in source or key not in target:
                continue
            old, new = source[key], target[key].clone()
            if old.shape[:1] != (len(available),) or old.shape[1:] != new.shape[1:]:
                continue  # rows of another width: reported as a tensor of another shape
            for row, head in enumerate(module.targets):
                if starts[head] is not None:
                    new[row] = old[available.index(starts[head])]
            source[key] = new
    return heads


def _config_of(task_config: Mapping, name: str, module: torch.nn.Module) -> Mapping | None:
    """The ``init_args`` of the task's submodule ``name`` in a checkpoint's task config, when the
    config builds it with zoo's class of that name (never imported: compared by name)."""
    node = task_config
    for part in name.split("."):
        node = node.get("init_args", {}).get(part) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping) or not isinstance(node.get("class_path"), str):
        return None
    package, _, cls = node["class_path"].rpartition(".")
    if package.split(".")[0] != "zoo" or cls != type(module).__name__:
        return None
    return node.get("init_args") or {}


def _as_loaded(task: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` as ``task``'s modules upgrade it when loading (their ``load_state_dict`` pre-hooks:
    the tensors of a checkpoint written by an older zoo under their names of today), so that its
    names and shapes compare with the task's own. The hooks leave a state dict of today unchanged."""
    state = dict(state)
    for name, module in task.named_modules():
        # the registered pre-hooks, called as load_state_dict calls them (torch keeps no public list)
        for hook in module._load_state_dict_pre_hooks.values():
            hook(state, f"{name}." if name else "", {}, True, [], [], [])
    return state

