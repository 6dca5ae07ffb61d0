"""Initial node features from the chemical element."""

from __future__ import annotations

import torch
from e3nn import o3


class ElementEmbedding(torch.nn.Module):
    """One-hot element index -> ``channels`` invariant features (``channels x 0e``).

    A linear map of a one-hot vector is a row of its weight matrix, so the lookup ``weight[index]``
    computes it without building the one-hot tensor.

    Args:
        num_elements: number of elements the model knows (see :class:`zoo.data.ElementIndex`).
        channels: number of output features.
    """

    def __init__(self, num_elements: int, channels: int):
        super().__init__()
        self.irreps_out = o3.Irreps(f"{channels}x0e")
        self.weight = torch.nn.Parameter(torch.empty(num_elements, channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # unit variance features, like e3nn's normalised layers expect
        torch.nn.init.normal_(self.weight)

    def forward(self, species: torch.Tensor) -> torch.Tensor:
        """[n_atoms] element indices -> [n_atoms, channels]."""
        return self.weight[species]
