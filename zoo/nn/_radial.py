"""Radial bases of interatomic distances: Bessel and Gaussian functions times a smooth envelope."""

from __future__ import annotations

import math

import torch

from zoo.nn._cutoff import PolynomialCutoff

RADIAL_BASES = ("bessel", "gaussian")


class _FixedBasis(torch.nn.Module):
    """``num_basis`` fixed functions of the distance on [0, cutoff]; no learnable parameters."""

    def __init__(self, cutoff: float, num_basis: int = 8):
        super().__init__()
        if cutoff <= 0 or num_basis < 1:
            raise ValueError(f"need cutoff > 0 and num_basis >= 1, got {cutoff}, {num_basis}")
        self.cutoff = float(cutoff)
        self.num_basis = int(num_basis)

    def reset_parameters(self) -> None:
        """No learnable parameters."""

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, num_basis={self.num_basis}"


class BesselBasis(_FixedBasis):
    r"""Spherical Bessel functions of order 0, :math:`\sqrt{2/r_c}\,\sin(n \pi r / r_c) / r`, n = 1..N.

    The orthogonal basis of DimeNet and NequIP; fixed frequencies.
    """

    def __init__(self, cutoff: float, num_basis: int = 8):
        super().__init__(cutoff, num_basis)
        self.prefactor = math.sqrt(2.0 / self.cutoff)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """[n] distances (Å, > 0) -> [n, num_basis]."""
        # built in the input's dtype, not stored: a float64 model gets float64 frequencies
        n = torch.arange(1, self.num_basis + 1, dtype=r.dtype, device=r.device)
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(n * (math.pi / self.cutoff) * r) / r


class GaussianBasis(_FixedBasis):
    """Gaussians centred evenly on [0, cutoff], each as wide as the spacing of the centres."""

    def __init__(self, cutoff: float, num_basis: int = 8):
        super().__init__(cutoff, num_basis)
        self.width = self.cutoff / max(num_basis - 1, 1)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """[n] distances (Å) -> [n, num_basis]."""
        x = (r.unsqueeze(-1) - self.centres(r.dtype, r.device)) / self.width
        return torch.exp(-0.5 * x.square())

    def centres(self, dtype=None, device=None) -> torch.Tensor:
        """The centres (Å), built in the dtype asked for rather than stored."""
        return torch.linspace(0.0, self.cutoff, self.num_basis, dtype=dtype, device=device)


class RadialEmbedding(torch.nn.Module):
    """A radial basis times :class:`PolynomialCutoff`: every function goes smoothly to 0 at the cutoff.

    Args:
        cutoff: radius (Å) beyond which the embedding is exactly zero.
        num_basis: number of basis functions.
        basis: ``"bessel"`` or ``"gaussian"``.
        p: exponent of the polynomial envelope.
    """

    def __init__(self, cutoff: float, num_basis: int = 8, basis: str = "bessel", p: int = 6):
        super().__init__()
        if basis not in RADIAL_BASES:
            raise ValueError(f"radial basis must be one of {RADIAL_BASES}, got {basis!r}")
        self.basis = (BesselBasis if basis == "bessel" else GaussianBasis)(cutoff, num_basis)
        self.envelope = PolynomialCutoff(cutoff, p)
        self.num_basis = int(num_basis)

    def reset_parameters(self) -> None:
        """No learnable parameters."""

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """[n] distances (Å) -> [n, num_basis]."""
        return self.basis(r) * self.envelope(r).unsqueeze(-1)
