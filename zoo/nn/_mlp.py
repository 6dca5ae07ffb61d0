"""The multilayer perceptron that turns a radial embedding into per-edge tensor-product weights."""

from __future__ import annotations

import torch
from e3nn.math import normalize2mom


class RadialMLP(torch.nn.Module):
    """Bias-free MLP with SiLU, scaled to keep unit second moments (as e3nn's FullyConnectedNet).

    Without biases a zero input gives a zero output, so weights computed from a radial embedding
    that vanishes at the cutoff vanish there too, smoothly: messages switch off continuously.

    Args:
        num_in: size of the radial embedding.
        hidden: width of the hidden layers.
        num_out: number of weights per edge.
        num_layers: number of hidden layers.
    """

    def __init__(self, num_in: int, hidden: int, num_out: int, num_layers: int = 2):
        super().__init__()
        sizes = [num_in] + [hidden] * num_layers + [num_out]
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.empty(a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
        )
        self.activation = normalize2mom(torch.nn.functional.silu)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for weight in self.weights:
            torch.nn.init.normal_(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, weight in enumerate(self.weights):
            if i:
                x = self.activation(x)
            x = x @ weight / weight.shape[0] ** 0.5
        return x
