"""Smooth cutoff envelope for radial functions."""

from __future__ import annotations

import torch


class PolynomialCutoff(torch.nn.Module):
    r"""Polynomial envelope of DimeNet (Gasteiger et al. 2020), 1 at r = 0 and 0 beyond the cutoff.

    .. math::
        u(x) = 1 - \frac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \frac{p(p+1)}{2} x^{p+2},
        \quad x = r / r_c

    The value and the first two derivatives vanish at x = 1, so energies, forces and force
    derivatives (needed to train on forces) stay continuous when an atom crosses the cutoff.
    """

    def __init__(self, cutoff: float, p: int = 6):
        super().__init__()
        if cutoff <= 0 or p < 2:
            raise ValueError(f"need cutoff > 0 and p >= 2, got cutoff={cutoff}, p={p}")
        self.cutoff = float(cutoff)
        self.p = int(p)

    def reset_parameters(self) -> None:
        """No learnable parameters."""

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        p = self.p
        x = r / self.cutoff
        envelope = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * x.pow(p)
            + p * (p + 2) * x.pow(p + 1)
            - 0.5 * p * (p + 1) * x.pow(p + 2)
        )
        # where, not masking in place: both branches stay differentiable (twice) everywhere
        return torch.where(x < 1.0, envelope, torch.zeros_like(envelope))

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, p={self.p}"
