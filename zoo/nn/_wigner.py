"""Full-precision Wigner 3j constants in e3nn tensor products, whatever dtype they were built in."""

from __future__ import annotations

import re

import torch
from e3nn import o3

_W3J_BUFFER = re.compile(r"_w3j_(\d+)_(\d+)_(\d+)$")


def restore_wigner_3j(module: torch.nn.Module) -> None:
    """Recompute the Wigner 3j buffers of e3nn tensor products in ``module`` in float64, then
    store them in each buffer's dtype.

    e3nn computes them in torch's default dtype when the module is built, so a model built in
    float32 and then converted with ``.double()`` (or given a float32 state dict) would keep
    float32-rounded coefficients and be equivariant only to ~1e-9 in float64.
    """
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            match = _W3J_BUFFER.search(name)
            if match and buffer.is_floating_point():
                exact = o3.wigner_3j(*map(int, match.groups()), dtype=torch.float64)
                if exact.shape != buffer.shape:
                    raise RuntimeError(f"e3nn buffer {name} has shape {tuple(buffer.shape)}, expected {tuple(exact.shape)}")
                buffer.copy_(exact)


def _restore_after_load(module: torch.nn.Module, incompatible_keys) -> None:
    restore_wigner_3j(module)
