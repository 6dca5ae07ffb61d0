"""Equivariant linear maps whose weights depend on the element of each atom."""

from __future__ import annotations

import torch
from e3nn import o3


class ElementLinear(torch.nn.Module):
    """An :class:`e3nn.o3.Linear` with one set of weights per element (NequIP's self-connection).

    Args:
        irreps_in: input irreps.
        irreps_out: output irreps; irreps absent from the input get zeros.
        num_elements: number of elements.
    """

    def __init__(self, irreps_in, irreps_out, num_elements: int):
        super().__init__()
        self.linear = o3.Linear(irreps_in, irreps_out, shared_weights=False, internal_weights=False)
        self.irreps_in, self.irreps_out = self.linear.irreps_in, self.linear.irreps_out
        self.weight = torch.nn.Parameter(torch.empty(num_elements, self.linear.weight_numel))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # e3nn's linear normalises paths itself and expects unit-variance weights
        torch.nn.init.normal_(self.weight)

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """[n_atoms, irreps_in.dim], [n_atoms] element indices -> [n_atoms, irreps_out.dim]."""
        return self.linear(x, self.weight[species])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | {self.weight.shape[0]} elements)"
