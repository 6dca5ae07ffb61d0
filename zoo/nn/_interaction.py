"""One message-passing layer of the equivariant backbone."""

from __future__ import annotations

import torch
from e3nn import o3

from zoo.nn._convolution import DepthwiseConvolution
from zoo.nn._gate import EquivariantGate
from zoo.nn._linear import ElementLinear


class Interaction(torch.nn.Module):
    """NequIP-style interaction: linear -> depthwise convolution -> linear, plus a self-connection,
    then a gate.

    .. code-block:: text

        x ──linear──conv(edges)──linear──(+)──gate──> out
        └──────── self-connection ────────┘

    The self-connection carries each atom's own features past the convolution (a residual that
    may change irreps); with ``num_elements`` its weights depend on the atom's element.

    Args:
        irreps_in: node input irreps.
        irreps_out: node output irreps (scalars first, as :class:`EquivariantGate` needs).
        irreps_sh: irreps of the edge spherical harmonics.
        num_radial: size of the radial embedding.
        radial_hidden: width of the radial MLP.
        avg_num_neighbors: normalises the sum over neighbours.
        num_elements: element-dependent self-connection if given, one shared linear if ``None``.
    """

    def __init__(self, irreps_in, irreps_out, irreps_sh, num_radial: int, radial_hidden: int = 64,
                 avg_num_neighbors: float = 10.0, num_elements: int | None = None):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate = EquivariantGate(irreps_out)
        self.irreps_out = self.gate.irreps_out
        self.linear_in = o3.Linear(self.irreps_in, self.irreps_in)
        self.convolution = DepthwiseConvolution(
            self.irreps_in, irreps_sh, self.gate.irreps_in, num_radial, radial_hidden, avg_num_neighbors
        )
        self.linear_out = o3.Linear(self.convolution.irreps_out, self.gate.irreps_in)
        self.self_connection = (
            o3.Linear(self.irreps_in, self.gate.irreps_in) if num_elements is None
            else ElementLinear(self.irreps_in, self.gate.irreps_in, num_elements)
        )

    def reset_parameters(self) -> None:
        for linear in (self.linear_in, self.linear_out, self.self_connection):
            if isinstance(linear, ElementLinear):
                linear.reset_parameters()
            else:
                torch.nn.init.normal_(linear.weight)  # e3nn's own initialisation
        self.convolution.reset_parameters()

    def forward(self, x: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor) -> torch.Tensor:
        """[n_atoms, irreps_in.dim] -> [n_atoms, irreps_out.dim]; ``species`` are element indices."""
        messages = self.convolution(self.linear_in(x), edge_index, edge_sh, edge_radial)
        if isinstance(self.self_connection, ElementLinear):
            residual = self.self_connection(x, species)
        else:
            residual = self.self_connection(x)
        return self.gate(self.linear_out(messages) + residual)
