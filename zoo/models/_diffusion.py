r"""The denoising diffusion over coordinates of :class:`~zoo.models.ConsistencyModel`'s structure generator.

Conventions (a decision, documented here once):

- **Variance preserving**, :math:`x_t = \alpha_t x_0 + \sigma_t \epsilon`,
  :math:`\alpha_t^2 + \sigma_t^2 = 1`, integer t = 0..T (:class:`DiffusionSchedule`).
- **Normalised units**: :math:`x = R / s` with ``position_scale`` s (Å) about the spread of a
  centred molecule's coordinates (1.25 Å for QM9), so that unit noise is s Å. The backbone
  always sees :math:`s\,x_t` in Å, so its radial basis and cutoff keep their meaning, and at
  t -> 0 the generator sees the structure as the energy model does. At t = T the noisy
  positions are a Gaussian cloud of width s, well inside a cutoff of ~10 Å; all pairs of atoms of
  a molecule are edges (:func:`~zoo.models.consistency.molecular_edges`), the cutoff envelope
  only switching off pairs that drift beyond it.
- **Centred**: :math:`x_0`, the noise and every prediction have zero centroid per molecule
  (translation invariance; the unweighted centroid, not the centre of mass).
- **v-parametrisation**: the head predicts :math:`v = \alpha_t \epsilon - \sigma_t x_0`, so both
  :math:`\hat x_0 = \alpha_t x_t - \sigma_t \hat v` and
  :math:`\hat\epsilon = \sigma_t x_t + \alpha_t \hat v` stay well conditioned at every t (an
  ε-prediction divides by :math:`\alpha_t \to 0` to get :math:`\hat x_0`). The denoising loss
  :math:`|\hat v - v|^2 = |\hat\epsilon - \epsilon|^2 + |\hat x_0 - x_0|^2` is the ε-MSE plus the
  x0-MSE.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch_geometric.utils import scatter

SCHEDULES = ("cosine", "linear")


class DiffusionSchedule(torch.nn.Module):
    r"""A variance-preserving noise schedule over integer times t = 0..T.

    :math:`\bar\alpha_t = \prod_{k \le t} (1 - \beta_k)`, :math:`\alpha_t = \sqrt{\bar\alpha_t}`,
    :math:`\sigma_t = \sqrt{1 - \bar\alpha_t}`; t = 0 is the clean structure.

    Args:
        timesteps: T.
        kind: ``"cosine"`` (Nichol & Dhariwal 2021, s = 0.008, β clipped at 0.999) or
            ``"linear"`` (Ho et al. 2020: β from 1e-4 to 0.02, scaled by 1000 / T).
    """

    def __init__(self, timesteps: int = 1000, kind: str = "cosine"):
        super().__init__()
        if timesteps < 1:
            raise ValueError(f"timesteps must be >= 1, got {timesteps}")
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")
        self.timesteps, self.kind = int(timesteps), kind
        t = torch.arange(timesteps + 1, dtype=torch.float64)
        if kind == "cosine":
            f = torch.cos((t / timesteps + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            scale = 1000.0 / timesteps
            betas = torch.linspace(1e-4 * scale, 0.02 * scale, timesteps, dtype=torch.float64).clamp(max=0.999)
        alpha_bar = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])
        # derived from (timesteps, kind): not part of a checkpoint
        self.register_buffer("alpha_bar", alpha_bar, persistent=False)

    def forward(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:math:`(\\alpha_t, \\sigma_t)` for integer times ``t`` (any shape), in the buffer's dtype."""
        if t.dtype.is_floating_point or (t.numel() and (int(t.min()) < 0 or int(t.max()) > self.timesteps)):
            raise ValueError(f"diffusion times must be integers in 0..{self.timesteps}")
        alpha_bar = self.alpha_bar[t]
        return alpha_bar.sqrt(), (1 - alpha_bar).clamp_min(0).sqrt()

    def times(self, steps: int, start: int | None = None) -> list[int]:
        """``steps + 1`` integer times from ``start`` (default T) down to 0, evenly spaced; with
        ``steps == start`` every time is visited."""
        start = self.timesteps if start is None else int(start)
        if not 1 <= steps <= start:
            raise ValueError(f"steps must be in 1..{start} (the starting time), got {steps}")
        return np.linspace(start, 0, steps + 1).round().astype(int).tolist()

    def ddim_step(self, x: torch.Tensor, v: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        r"""One deterministic DDIM step (η = 0) from time t to s < t with predicted v:
        :math:`x_s = \alpha_s \hat x_0 + \sigma_s \hat\epsilon`. ``t``, ``s`` broadcast against ``x``."""
        alpha_t, sigma_t = (a.to(x.dtype) for a in self(t))
        alpha_s, sigma_s = (a.to(x.dtype) for a in self(s))
        x0 = alpha_t * x - sigma_t * v
        epsilon = sigma_t * x + alpha_t * v
        return alpha_s * x0 + sigma_s * epsilon

    def extra_repr(self) -> str:
        return f"timesteps={self.timesteps}, kind={self.kind!r}"


def time_embedding(t: torch.Tensor, timesteps: int, features: int, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal features [len(t), features] of integer times, on the 0..1000 scale whatever T is."""
    half = features // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=dtype, device=t.device) / half)
    angle = (t.to(dtype) * (1000.0 / timesteps)).unsqueeze(-1) * frequencies
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


def centre(x: torch.Tensor, batch: torch.Tensor, n_molecules: int) -> torch.Tensor:
    """``x`` [n_atoms, 3] minus the mean over each molecule's atoms."""
    return x - scatter(x, batch, dim=0, dim_size=n_molecules, reduce="mean")[batch]


def centred_noise(like: torch.Tensor, batch: torch.Tensor, n_molecules: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``like`` [n_atoms, 3], centred on each molecule."""
    noise = torch.randn(like.shape, dtype=like.dtype, device=like.device, generator=generator)
    return centre(noise, batch, n_molecules)


class Noised(NamedTuple):
    """A structure noised to time t, in normalised units (see the module docs).

    Attributes:
        x_t: [n_atoms, 3] noisy positions.
        t: [n_molecules] integer times.
        epsilon: [n_atoms, 3] the centred noise.
        v: [n_atoms, 3] the target of the head, alpha_t epsilon - sigma_t x_0.
    """

    x_t: torch.Tensor
    t: torch.Tensor
    epsilon: torch.Tensor
    v: torch.Tensor


def random_times(n: int, low: int, high: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` integer times uniform in ``low..high``."""
    return torch.randint(low, high + 1, (n,), device=device, generator=generator)
