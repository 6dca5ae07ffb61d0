r"""The losses of multi-task physical-consistency training (Ren et al., NeurIPS 2024): the structure
generator's denoising loss, and the two consistency losses that tie it to the energy model of the
same :class:`~zoo.models.ConsistencyModel`.

**The frozen energy model.** With a shared backbone, the energy model's parameters are also the
generator's, so "frozen" cannot mean "these parameters get no gradient". It means the energy
model is a fixed function of the positions inside these losses
(:meth:`~zoo.models.ConsistencyModel.frozen_energy`): it is evaluated on detached positions,
without a graph to its parameters, and enters the loss only through its value and its gradient
in the positions. The parameters (backbone included) get gradient only through the generator's
output, exactly as if a frozen copy of the energy model scored the generated structure.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch_geometric.utils import scatter

from zoo.data import batch_index, keys, kind_mask, n_structures, select_structures
from zoo.losses._auxiliary import AuxiliaryLoss, Step
from zoo.models._diffusion import centre, random_times

#: Structure kinds the generator learns by default: cheap equilibrium structures (see :mod:`zoo.data.keys`).
EQUILIBRIUM_KINDS = ("xtb_optimized",)


def optimality_loss(model, batch, t: torch.Tensor, reference_energy: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Optimality consistency: the generated structure should be a minimum of the energy model.

    :math:`\hat R` is ``model``'s one-shot structure from ``batch``'s positions noised to ``t``; the
    loss is the mean over molecules of :math:`E_{\bar\theta}(G, \hat R) / n_{atoms}`, with the
    energy model frozen (module docs). It is computed as the first-order expansion of the
    frozen energy around :math:`\hat R`, whose value and gradient are those of
    :math:`E_{\bar\theta}(G, \hat R(\theta))`: one energy-and-force evaluation, no graph
    through the energy model.

    Args:
        model: a :class:`~zoo.models.ConsistencyModel`.
        batch: structures with their molecular graph.
        t: [n_molecules] integer noise times.
        reference_energy: [n_molecules] energies of the input structures, subtracted from the
            value (not the gradient), which then reads as the energy gap per atom (eV);
            default: the frozen model's energy of the input structures.
        generator: seeds the noise.

    Returns:
        The loss (eV per atom) and the energy gaps :math:`E(\hat R) - E(R)` [n_molecules] (eV).
    """
    generated = model.one_shot(batch, batch[keys.POSITIONS], t, generator)
    frozen = model.frozen_energy(batch, generated)
    if reference_energy is None:
        reference_energy = model.frozen_energy(batch, batch[keys.POSITIONS])[keys.ENERGY]
    gap = frozen[keys.ENERGY] - reference_energy.detach().reshape(-1)
    # the gradient of E at R-hat dotted with the displacement from R-hat: 0 in value, dE in gradient
    first_order = ((-frozen[keys.FORCES]) * (generated - generated.detach())).sum(-1)
    per_molecule = gap + scatter(first_order, batch_index(batch), dim=0, dim_size=n_structures(batch))
    n_atoms = batch[keys.N_ATOMS].reshape(-1).to(gap.dtype)
    return (per_molecule / n_atoms).mean(), gap.detach()


def score_target(forces: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, position_scale: float,
                 kT: float) -> torch.Tensor:
    r"""The noise :math:`\epsilon^* = -\sigma_t\, s\, F / (\alpha_t\, kT)` whose score
    :math:`-\epsilon^*/\sigma_t` is the Boltzmann score :math:`s F(R) / (\alpha_t kT)` in normalised
    units, for forces F (eV/Å) at :math:`R = s\,x_t/\alpha_t`, ``position_scale`` s (Å), kT (eV)."""
    if not kT > 0:
        raise ValueError(f"kT must be positive (eV), got {kT}")
    return -sigma * position_scale * forces / (alpha * kT)


def score_consistency_loss(model, batch, t: torch.Tensor, kT: float,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Score consistency: at small noise the generator's score matches the Boltzmann score
    of the frozen energy model, :math:`s_\theta(x_t, t) \approx -\nabla_x E_{\bar\theta}/kT`.

    With :math:`s_\theta = -\hat\epsilon / \sigma_t` and the Boltzmann density of
    :math:`R = s\,x_t / \alpha_t` (exact as :math:`\sigma_t \to 0`), the target noise is
    :func:`score_target`; the loss is the mean squared error of :math:`\hat\epsilon` against
    it (in noise units, as the denoising loss).

    Args:
        model: a :class:`~zoo.models.ConsistencyModel`.
        batch: the structures to noise (any kind: the Boltzmann score holds everywhere).
        t: [n_molecules] small integer times.
        kT: the temperature of the Boltzmann distribution, eV.
        generator: seeds the noise.
    """
    prepared = model.prepare(batch)
    noised = model.noise(prepared, model.normalise(prepared), t, generator)
    _, epsilon = model.denoise(prepared, noised.x_t, t)
    molecule = batch_index(prepared)
    alpha, sigma = (a.to(epsilon.dtype)[molecule].unsqueeze(-1) for a in model.schedule(t))
    forces = model.frozen_energy(batch, noised.x_t * model.position_scale / alpha)[keys.FORCES]
    target = score_target(forces, alpha, sigma, model.position_scale, kT)
    return torch.nn.functional.mse_loss(epsilon, centre(target, molecule, n_structures(prepared)))


def _times_up_to(model, batch, max_time: float) -> torch.Tensor:
    """Integer noise times uniform in 1..``max_time``·T of ``model``'s schedule, one per molecule of ``batch``."""
    highest = max(1, round(max_time * model.schedule.timesteps))
    return random_times(n_structures(batch), 1, highest, batch[keys.POSITIONS].device)


def _check_max_time(name: str, max_time: float) -> float:
    if not 0 < max_time <= 1:
        raise ValueError(f"the {name} loss's max_time={max_time}: noise times are fractions of T in (0, 1]")
    return float(max_time)


class DiffusionDenoisingLoss(AuxiliaryLoss):
    """The generator's denoising loss (:meth:`~zoo.models.ConsistencyModel.denoising_loss`, the
    v-MSE of the diffusion) on the batch's structures of ``kinds``, the structures the generator
    learns. Measured in validation and test too, with noise fixed per batch (seeded by its number).

    Args:
        weight: the loss's weight in the task's total.
        kinds: structure kinds (``structure_kind``) the generator learns; data that name no kinds
            count as such structures throughout.
    """

    name = "denoising"
    stages = ("train", "val", "test")

    def __init__(self, weight: float = 1.0, kinds: Sequence[str] = EQUILIBRIUM_KINDS):
        super().__init__(weight)
        self.kinds = list(kinds)

    def forward(self, step: Step) -> torch.Tensor | None:
        structures = select_structures(step.batch, kind_mask(step.batch, self.kinds))
        if structures is None:
            return None
        generator = None
        if step.stage != "train":  # the same noise at every evaluation: epochs stay comparable
            generator = torch.Generator(device=step.batch[keys.POSITIONS].device).manual_seed(step.batch_idx)
        return step.model.denoising_loss(structures, generator=generator)


class OptimalityLoss(AuxiliaryLoss):
    """:func:`optimality_loss` of one-shot structures generated from the batch's structures of
    ``kinds`` noised to times uniform in 1..``max_time``·T, against the energies the step's
    forward pass predicted for them; logs the mean energy gap as ``train/energy_gap``. Skipped at
    weight 0.

    Args:
        weight: the loss's weight in the task's total.
        start_epoch: the first epoch with the loss (stage 2 of consistency training).
        max_time: the largest noise time, as a fraction of T.
        kinds: structure kinds generated from.
    """

    name = "optimality"

    def __init__(self, weight: float = 0.1, start_epoch: int = 0, max_time: float = 0.3,
                 kinds: Sequence[str] = EQUILIBRIUM_KINDS):
        super().__init__(weight, start_epoch)
        self.max_time = _check_max_time(self.name, max_time)
        self.kinds = list(kinds)

    def active(self, step: Step) -> bool:
        return super().active(step) and self.loss_weight > 0

    def forward(self, step: Step) -> torch.Tensor | None:
        selected = kind_mask(step.batch, self.kinds)
        structures = select_structures(step.batch, selected)
        if structures is None:
            return None
        t = _times_up_to(step.model, structures, self.max_time)
        loss, gap = optimality_loss(step.model, structures, t, step.predictions[keys.ENERGY][selected])
        step.log(f"{step.stage}/energy_gap", gap.mean(), batch_size=int(gap.numel()))
        return loss


class ScoreConsistencyLoss(AuxiliaryLoss):
    """:func:`score_consistency_loss` at temperature ``kT`` on every structure of the batch, at
    noise times uniform in 1..``max_time``·T. Skipped at weight 0.

    Args:
        weight: the loss's weight in the task's total.
        start_epoch: the first epoch with the loss (stage 2 of consistency training).
        max_time: the largest noise time, as a fraction of T (small: the target is exact as
            the noise vanishes).
        kT: the temperature of the Boltzmann distribution, eV.
    """

    name = "score"

    def __init__(self, weight: float = 0.1, start_epoch: int = 0, max_time: float = 0.01, kT: float = 0.02585):
        super().__init__(weight, start_epoch)
        if not kT > 0:
            raise ValueError(f"kT must be positive (eV), got {kT}")
        self.max_time = _check_max_time(self.name, max_time)
        self.kT = float(kT)

    def active(self, step: Step) -> bool:
        return super().active(step) and self.loss_weight > 0

    def forward(self, step: Step) -> torch.Tensor:
        t = _times_up_to(step.model, step.batch, self.max_time)
        return score_consistency_loss(step.model, step.batch, t, self.kT)
