"""The one place where the tensors of models saved by an older zoo are brought to today's layout.

:func:`upgrade_state_dict` is a ``load_state_dict`` pre-hook of every
:class:`~zoo.models._rescale.RescaledModel` (property, MPNN, force-field and consistency models)
and of :class:`~zoo.models.HamiltonianModel`, so it runs wherever such a model is loaded:
published checkpoints, fine-tuning and Lightning's resume alike. Each step below renames or
converts the tensors of one older layout and leaves a state dict already in today's layout
untouched; add a step (and a test loading the old layout) whenever a model's tensors change name
or meaning.
"""

from __future__ import annotations

import torch

from zoo.nn import ChannelwiseTensorProduct

#: Statistics buffers that the models held themselves before the rescale modules (zoo 0.1.0).
_RESCALE_BUFFERS = {"shift": "rescale.shift", "scale": "rescale.scale", "atomref": "reference_energies.atomref"}


def upgrade_state_dict(module: torch.nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """Rename and convert, in place, the tensors of ``module`` (under ``prefix``) saved by older zoo."""
    _move_rescale_buffers(state_dict, prefix)
    _min_distance_to_domain(module, state_dict, prefix)
    _drop_e3nn_product_constants(module, state_dict, prefix)


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


def _drop_e3nn_product_constants(module: torch.nn.Module, state_dict: dict, prefix: str) -> None:
    # The channelwise products were e3nn TensorProducts until zoo 0.2, whose state dicts also held
    # constants (Wigner 3j symbols, an output mask) and, with the weights passed in, an empty
    # weight; ChannelwiseTensorProduct computes the constants itself and keeps only real weights.
    for name, product in module.named_modules():
        if not isinstance(product, ChannelwiseTensorProduct):
            continue
        key = f"{prefix}{name}."
        for old in [k for k in state_dict if k.startswith(key + "_compiled_main_left_right.")]:
            del state_dict[old]
        state_dict.pop(key + "output_mask", None)
        if product.weights_per_sample and key + "weight" in state_dict and state_dict[key + "weight"].numel() == 0:
            del state_dict[key + "weight"]
