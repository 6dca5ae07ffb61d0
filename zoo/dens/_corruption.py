"""DeNS corruption: which structures and atoms are noised, by how much, and the normalised target."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zoo.data import batch_index, keys, n_structures


@dataclass
class Corruption:
    """One draw of DeNS noise for a batch.

    Attributes:
        positions: [n_atoms, 3] corrupted positions (Å); uncorrupted atoms keep theirs.
        mask: [n_atoms] bool, the corrupted atoms.
        target: [n_atoms, 3] the noise divided by its sigma (zero for uncorrupted atoms).
        sigma: [n_atoms] the noise scale (Å) of each atom's structure.
        denoised: [n_structures] bool, the structures chosen for denoising.
    """

    positions: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    sigma: torch.Tensor
    denoised: torch.Tensor


def check_recipe(probability: float, corrupt_ratio: float, sigma: float | Sequence[float]) -> torch.Tensor:
    """Validate corruption parameters; returns the sigmas as a float64 tensor."""
    if not 0.0 <= probability <= 1.0 or not 0.0 <= corrupt_ratio <= 1.0:
        raise ValueError(f"probability and corrupt_ratio must be in [0, 1], got {probability}, {corrupt_ratio}")
    sigmas = torch.as_tensor([sigma] if isinstance(sigma, (int, float)) else list(sigma), dtype=torch.float64)
    if sigmas.numel() == 0 or not (sigmas > 0).all():
        raise ValueError(f"sigma must be positive (Å), got {sigma}")
    return sigmas


def corrupt(
    batch,
    probability: float = 0.25,
    corrupt_ratio: float = 0.25,
    sigma: float | Sequence[float] = 0.05,
    per_batch: bool = False,
    generator: torch.Generator | None = None,
) -> Corruption:
    """Draw DeNS noise for a batch.

    Each structure is chosen for denoising with probability ``probability`` (``per_batch``: the
    whole batch at once, OC20's recipe); in a chosen structure each atom is corrupted with
    probability ``corrupt_ratio`` by Gaussian noise of standard deviation ``sigma`` (Å), one value
    drawn per structure when ``sigma`` is a list. The target is noise / sigma, a standard normal
    whatever sigma, so several sigmas share one head.
    """
    sigmas = check_recipe(probability, corrupt_ratio, sigma)
    pos = batch[keys.POSITIONS]
    index, size = batch_index(batch), n_structures(batch)
    device = pos.device

    def uniform(n):  # drawn on the CPU generator, then moved: reproducible on any device
        return torch.rand(n, generator=generator, dtype=torch.float64).to(device)

    if per_batch:
        denoised = (uniform(1) < probability).expand(size)
    else:
        denoised = uniform(size) < probability
    mask = denoised[index] & (uniform(pos.shape[0]) < corrupt_ratio)
    choice = torch.randint(sigmas.numel(), (size,), generator=generator)
    sigma_atom = sigmas[choice].to(device=device, dtype=pos.dtype)[index]
    normal = torch.randn(pos.shape, generator=generator, dtype=torch.float64).to(device=device, dtype=pos.dtype)
    target = normal * mask[:, None]
    positions = pos.detach() + target * sigma_atom[:, None]
    return Corruption(positions, mask, target, sigma_atom, denoised)
