"""The one place where the tensors of models saved by an older zoo are brought to today's layout.

:func:`upgrade_state_dict` is a ``load_state_dict`` pre-hook of every
:class:`~zoo.models._rescale.RescaledModel` (property, MPNN, force-field and consistency models),
so it runs wherever such a model is loaded: published checkpoints, fine-tuning and Lightning's
resume alike. Each step below renames or converts the tensors of one older layout and leaves a
state dict already in today's layout untouched; add a step (and a test loading the old layout)
whenever a model's tensors change name or meaning.
"""

from __future__ import annotations

import torch

#: Statistics buffers that the models held themselves before the rescale modules (zoo 0.1.0).
_RESCALE_BUFFERS = {"shift": "rescale.shift", "scale": "rescale.scale", "atomref": "reference_energies.atomref"}


def upgrade_state_dict(module: torch.nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Rename and convert, in place, the tensors of ``module`` (under ``prefix``) saved by older zoo."""
    _move_rescale_buffers(state_dict, prefix)
    _min_distance_to_domain(module, state_dict, prefix)


def _move_rescale_buffers(state_dict: dict, prefix: str) -> None:
    for old, new in _RESCALE_BUFFERS.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


def _min_distance_to_domain(module: torch.nn.Module, state_dict: dict, prefix: str) -> None:
    # Force fields saved before the training domain (the first published ones) carry the shortest
    # interatomic distance of their training set as one number, `min_distance`: it bounds the
    # shortest distance of every element pair from below, so it keeps their warning about
    # compressed atoms (0: not recorded, an unfitted domain). Their training set's size is unknown.
    legacy = state_dict.pop(prefix + "min_distance", None)
    domain = prefix + "domain."
    if legacy is None or float(legacy) <= 0 or any(key.startswith(domain) for key in state_dict):
        return
    state_dict[domain + "shortest_distance"] = torch.full_like(module.domain.shortest_distance, float(legacy))
    state_dict[domain + "max_atoms"] = torch.zeros_like(module.domain.max_atoms)
