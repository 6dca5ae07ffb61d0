"""Gate nonlinearity for a given set of output irreps."""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.nn import Gate


class EquivariantGate(Gate):
    """The :class:`e3nn.nn.Gate` whose output is ``irreps_out`` (scalars first, then l > 0).

    Even scalars go through SiLU, odd scalars through tanh (an odd function keeps their parity),
    and each l > 0 irrep is multiplied by the sigmoid of its own extra even scalar, the gate.
    The input, :attr:`irreps_in`, is therefore ``irreps_out`` plus one ``0e`` per gated irrep.
    """

    def __init__(self, irreps_out):
        irreps_out = o3.Irreps(irreps_out)
        scalars = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l == 0])
        gated = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir.l > 0])
        if scalars + gated != irreps_out:
            raise ValueError(f"gate output irreps must list scalars first, got {irreps_out}")
        acts = [torch.nn.functional.silu if ir.p == 1 else torch.tanh for _, ir in scalars]
        gates = o3.Irreps(f"{gated.num_irreps}x0e") if gated.num_irreps else o3.Irreps("")
        super().__init__(scalars, acts, gates, [torch.sigmoid] if gated.num_irreps else [], gated)

    def reset_parameters(self) -> None:
        """No learnable parameters."""
