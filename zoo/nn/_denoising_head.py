"""The equivariant l=1 head that predicts a vector per atom (denoising noise, DeNS and diffusion)."""

from __future__ import annotations

import torch
from e3nn import o3

from zoo.nn._gate import EquivariantGate


class DenoisingHead(torch.nn.Module):
    """Node features -> one vector (``1x1o``, Cartesian (x, y, z) with e3nn 0.6) per atom.

    Linear -> gate -> linear on the backbone's even scalars and vectors: two equivariant layers,
    so the vector can depend nonlinearly on the invariants (a single linear map could only
    rescale the backbone's vector channels). Shared by DeNS (:mod:`zoo.dens`, noise / sigma of
    corrupted atoms) and the diffusion generator of :class:`zoo.models.ConsistencyModel`.

    Args:
        irreps_in: the backbone's ``irreps_out``; it must contain vectors (``1o``).
        hidden: multiplicity of the hidden scalars and vectors.
    """

    def __init__(self, irreps_in, hidden: int = 16):
        super().__init__()
        irreps_in = o3.Irreps(irreps_in)
        if o3.Irrep("1o") not in irreps_in:
            raise ValueError(f"a denoising head needs vector features (1o) in the backbone's {irreps_in}; use l_max >= 1")
        self.irreps_in = irreps_in
        self.gate = EquivariantGate(o3.Irreps(f"{hidden}x0e+{hidden}x1o"))
        self.linear_in = o3.Linear(irreps_in, self.gate.irreps_in)
        self.linear_out = o3.Linear(self.gate.irreps_out, "1x1o")

    def reset_parameters(self) -> None:
        for linear in (self.linear_in, self.linear_out):
            torch.nn.init.normal_(linear.weight)  # e3nn's own initialisation

    def forward(self, node_features: torch.Tensor) -> torch.Tensor:
        """[n_atoms, irreps_in.dim] -> [n_atoms, 3]."""
        return self.linear_out(self.gate(self.linear_in(node_features)))
