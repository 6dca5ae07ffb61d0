"""One message-passing layer of the equivariant backbone."""

from __future__ import annotations

import torch
from e3nn import o3

from zoo.nn._convolution import DepthwiseConvolution
from zoo.nn._gate import EquivariantGate
from zoo.nn._linear import ElementLinear


def message_layers(irreps_in: o3.Irreps, irreps_sh, irreps_messages, num_radial: int, radial_hidden: int,
                   avg_num_neighbors: float) -> tuple[o3.Linear, DepthwiseConvolution, o3.Linear]:
    """The two-body message path of an interaction, ``linear -> depthwise convolution -> linear``,
    from node features ``irreps_in`` to messages ``irreps_messages``; built in this order, which
    fixes the initialisation drawn from a seed and the order of the parameters."""
    linear_in = o3.Linear(irreps_in, irreps_in)
    convolution = DepthwiseConvolution(irreps_in, irreps_sh, irreps_messages, num_radial, radial_hidden,
                                       avg_num_neighbors)
    return linear_in, convolution, o3.Linear(convolution.irreps_out, irreps_messages)


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
        self.linear_in, self.convolution, self.linear_out = message_layers(
            self.irreps_in, irreps_sh, self.gate.irreps_in, num_radial, radial_hidden, avg_num_neighbors
        )
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
