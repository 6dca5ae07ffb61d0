"""DeNS force encoding: the original forces of corrupted atoms as equivariant node inputs."""

from __future__ import annotations

import torch
from e3nn import o3


class ForceEncoding(torch.nn.Module):
    r"""Spherical harmonics of the force direction for l = 0..``l_max`` times the force magnitude,
    mapped by one equivariant linear layer to ``irreps_out`` (a backbone's ``extra_node_irreps``):

    .. math:: e_i = m_i \, W \left( Y(\hat F_i) \, |F_i| / s \right)

    with :math:`m_i = 1` for corrupted atoms and 0 otherwise, so uncorrupted atoms, and every atom
    at inference, get exactly zero. The linear map has no bias (a bias would be a nonzero scalar
    for ``F = 0``). ``s`` (:attr:`force_scale`, eV/Å) keeps the inputs of order one.

    With ``bounded``, each atom's encoding is then divided by :math:`\sqrt{1 + \overline{e_i^2}}`
    (the mean square over its components, a rotation invariant): small encodings pass unchanged,
    large ones end with a root mean square below one, whatever the force and the weights. A
    backbone whose many-body product raises its inputs to a power (correlation 3, over several
    layers) otherwise turns encodings a few times the element embedding's size into node features
    of 10⁶ and a denoising loss of 10⁷ in one step (``benchmarks/dens/step_trace.py``).

    Args:
        irreps_out: irreps of the encoding; irreps that no l <= ``l_max`` reaches stay zero.
        l_max: highest degree of the spherical harmonics.
        force_scale: typical force magnitude (eV/Å); :meth:`set_statistics` sets it from data.
        bounded: bound each atom's encoding as above (``False``: the paper's encoding).
    """

    def __init__(self, irreps_out, l_max: int = 2, force_scale: float = 1.0, bounded: bool = True):
        super().__init__()
        self.irreps_sh = o3.Irreps.spherical_harmonics(l_max)
        self.irreps_out = o3.Irreps(irreps_out)
        if not any(ir in self.irreps_out for _, ir in self.irreps_sh):
            raise ValueError(
                f"force encoding of degree <= {l_max} ({self.irreps_sh}) cannot reach any of {self.irreps_out}; "
                "give the backbone extra_node_irreps with some of these irreps"
            )
        # normalize=False: the direction is normalised here, so that F = 0 gives zeros, not NaN
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=False, normalization="component")
        self.linear = o3.Linear(self.irreps_sh, self.irreps_out)
        self.register_buffer("force_scale", torch.tensor(float(force_scale)))
        self.bounded = bool(bounded)

    def set_statistics(self, force_std: float) -> None:
        self.force_scale.fill_(float(force_std))

    def forward(self, forces: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Forces [n_atoms, 3] (eV/Å, Cartesian), mask [n_atoms] bool -> [n_atoms, irreps_out.dim]."""
        magnitude = forces.norm(dim=-1, keepdim=True)
        direction = forces / magnitude.clamp_min(torch.finfo(forces.dtype).tiny)
        features = self.spherical_harmonics(direction) * (magnitude / self.force_scale)
        encoding = self.linear(features)
        if self.bounded:
            encoding = encoding * torch.rsqrt(1.0 + encoding.pow(2).mean(dim=-1, keepdim=True))
        return encoding * mask.to(forces.dtype)[:, None]

    def extra_repr(self) -> str:
        return f"bounded={self.bounded}"
