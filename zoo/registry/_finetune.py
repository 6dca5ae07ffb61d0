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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    _, info = read_config(resolved.folder)
    source = _as_loaded(task, read_weights(resolved.folder))
    target = task.state_dict()
    excluded = sorted(k for k in source if any(fnmatch.fnmatchcase(k, p) for p in exclude))
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
    not_loaded = sorted(k for k in target if any(fnmatch.fnmatchcase(k, p) for p in required) and k not in loaded)
    if not_loaded:
        task.load_state_dict(before, strict=False)
        raise CheckpointFormatError(
            f"cannot start {type(task).__name__} from {resolved.name!r}: {len(not_loaded)} tensors that must come from "
            f"it ({', '.join(required)}) do not fit: {', '.join(not_loaded[:6])}{', ...' if len(not_loaded) > 6 else ''}"
            + (f" ({'; '.join(problems)})" if problems else "") + f". Build the task with {resolved.name!r}'s "
            f"architecture (its config.json: elements {', '.join(info.elements)}, backbone sizes) and change only "
            "the heads")
    if strict and (problems or excluded):
        task.load_state_dict(before, strict=False)
        raise CheckpointFormatError(
            f"cannot load {resolved.name!r} strictly into {type(task).__name__}: " + "; ".join(problems)
            + (f"; excluded {excluded}" if excluded else "") + ". Use strict=False to load the tensors that match."
        )
    # among Lightning's start-up messages, which are shown by default, and once: on rank zero
    rank_zero_info(f"zoo: initialised {type(task).__name__} from the pretrained weights of {resolved.name!r} "
                   f"({resolved.source}): {len(loaded)} of {len(target)} tensors")
    for problem in problems:
        log.warning("fine-tuning from %r: %s", resolved.name, problem)
    return LoadReport(resolved.source, sorted(loaded), missing, unexpected, mismatched, excluded)


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

