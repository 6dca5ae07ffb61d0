"""The multi-task physical-consistency task: energy, forces, structure denoising, and the consistency
losses that tie the structure generator to the energy model (Ren et al., NeurIPS 2024)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torchmetrics
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from zoo.data import Statistics, keys, kind_mask, select_structures
from zoo.losses import (
    EQUILIBRIUM_KINDS,
    DiffusionDenoisingLoss,
    Forward,
    OptimalityLoss,
    Output,
    ScoreConsistencyLoss,
    energy_force_outputs,
)
from zoo.metrics.structure import kabsch_rmsd
from zoo.tasks._base import STAGES, AtomisticTask

#: Structure kinds generated structures are compared with (``info["structure_kind"]``, see :mod:`zoo.data.keys`).
REFERENCE_KINDS = ("xtb_optimized", "qm9_reference")


class ConsistencyTask(AtomisticTask):
    """Trains a :class:`~zoo.models.ConsistencyModel` on heterogeneous data in two stages.

    Losses, each with its weight from the recipe:

    - ``energy`` and ``forces`` (the task's outputs; MSE standardised by the training set's
      per-atom energy and force standard deviations when ``standardize_losses``), only on
      structures whose labels exist (``has_energy`` / ``has_forces`` masks of
      ``read_ase(..., mask_missing=True)``); forces from ``force_start_epoch`` on;

    and the auxiliary losses of :mod:`zoo.losses`:

    - ``denoising``: the v-MSE of the diffusion (:class:`~zoo.losses.DiffusionDenoisingLoss`)
      on equilibrium structures (``structure_kind`` in ``equilibrium_kinds``: the cheap
      structures the generator learns);
    - ``optimality`` (stage 2): the frozen energy model's energy per atom of one-shot structures
      generated from the equilibrium structures noised to a time up to ``optimality_max_time``
      (:class:`~zoo.losses.OptimalityLoss`; logged as the energy gap to the input structures,
      ``train/energy_gap``);
    - ``score`` (stage 2): score consistency with the Boltzmann distribution at ``kT`` at times
      up to ``score_max_time``, on every structure (:class:`~zoo.losses.ScoreConsistencyLoss`).

    Stage 1 (epochs before ``consistency_start_epoch``) is plain multi-task learning; stage 2
    adds the consistency losses and, by default, the forces, as in the paper. Data without
    ``structure_kind`` count as equilibrium structures throughout.

    Validation and test log the label metrics, the denoising loss (fixed noise per batch) and
    the structure metrics of one-shot generation (an RDKit conformer noised to the model's
    ``one_shot_start`` and denoised once) against the structures of ``reference_kinds``:
    ``{stage}/rmsd`` (Å, after Kabsch superposition) and ``{stage}/energy_gap`` (eV, the energy
    model's E(generated) - E(reference)); validation on its first ``val_structures`` such
    structures only, test on all.

    Args:
        model: the :class:`~zoo.models.ConsistencyModel`.
        outputs: default: energy (weight 1) and forces (weight 10), MSE.
        denoising_weight, optimality_weight, score_weight: weights of those losses.
        consistency_start_epoch: first epoch of stage 2.
        force_start_epoch: first epoch with the force loss (default: ``consistency_start_epoch``).
        kT: temperature of the score consistency's Boltzmann distribution (eV).
        optimality_max_time, score_max_time: the noise times of those losses are uniform in
            1..(this fraction of T).
        equilibrium_kinds: structure kinds the generator learns.
        reference_kinds: structure kinds generated structures are compared with.
        val_structures: how many reference structures validation generates per epoch.
        standardize_losses: set the outputs' loss scales from the data module's statistics (the
            standard deviations of its ``standardize`` keys).
        optimizer, lr_scheduler, monitor, pretrained, keep_pretrained_statistics: as
            :class:`AtomisticTask`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        outputs: Sequence[Output] | None = None,
        denoising_weight: float = 1.0,
        optimality_weight: float = 0.1,
        score_weight: float = 0.1,
        consistency_start_epoch: int = 0,
        force_start_epoch: int | None = None,
        kT: float = 0.02585,
        optimality_max_time: float = 0.3,
        score_max_time: float = 0.01,
        equilibrium_kinds: Sequence[str] = EQUILIBRIUM_KINDS,
        reference_kinds: Sequence[str] = REFERENCE_KINDS,
        val_structures: int = 16,
        standardize_losses: bool = True,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        monitor: str = "val/loss",
        pretrained: str | None = None,
        keep_pretrained_statistics: bool = False,
    ):
        outputs = energy_force_outputs(outputs, "consistency")
        if optimality_weight and optimality_max_time > model.max_noise_time:
            raise ValueError(f"optimality_max_time={optimality_max_time} asks the generator for noise times it does "
                             f"not learn (the model's max_noise_time={model.max_noise_time}): lower it to at most that")
        auxiliary = [
            DiffusionDenoisingLoss(denoising_weight, equilibrium_kinds),
            OptimalityLoss(optimality_weight, consistency_start_epoch, optimality_max_time, equilibrium_kinds),
            ScoreConsistencyLoss(score_weight, consistency_start_epoch, score_max_time, kT),
        ]
        super().__init__(model, outputs, optimizer, lr_scheduler, monitor, pretrained, keep_pretrained_statistics,
                         auxiliary)
        self.consistency_start_epoch = int(consistency_start_epoch)
        self.force_start_epoch = self.consistency_start_epoch if force_start_epoch is None else int(force_start_epoch)
        self.reference_kinds = list(reference_kinds)
        self.val_structures = int(val_structures)
        self.standardize_losses = standardize_losses
        self.structure_metrics = torch.nn.ModuleDict({
            f"{stage}_{name}": torchmetrics.MeanMetric() for stage in STAGES if stage != "train"
            for name in ("rmsd", "energy_gap")
        })
        self._generated = 0

    def set_statistics(self, statistics: Statistics, model: bool = True) -> None:
        """:meth:`AtomisticTask.set_statistics`, and with ``standardize_losses`` each output's loss
        scale from its target's standard deviation."""
        super().set_statistics(statistics, model)
        if not self.standardize_losses:
            return
        for output in self.outputs:
            std = statistics.std(output.target)
            if std:
                output.scale = std

    # --- training ------------------------------------------------------------------------------

    def _trains_forces(self) -> bool:
        return self.current_epoch >= self.force_start_epoch and any(o.name == keys.FORCES for o in self.outputs)

    def forward_pass(self, batch, stage: str) -> Forward:
        """The energy model's predictions; in training, forces only from ``force_start_epoch`` on."""
        if stage != "train":
            return super().forward_pass(batch, stage)
        return Forward(self.model(batch, forces=self._trains_forces()))

    def active_outputs(self, stage: str) -> list[Output]:
        if stage == "train" and not self._trains_forces():
            return [o for o in self.outputs if o.name != keys.FORCES]
        return self.outputs

    # --- evaluation ----------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._generated = 0

    def validation_step(self, batch, batch_idx):
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        return self._evaluate(batch, batch_idx, "test")

    def _evaluate(self, batch, batch_idx: int, stage: str) -> torch.Tensor:
        loss = self.require_finite_loss(self.step_loss(batch, stage, batch_idx), stage, batch_idx)
        self._structure_metrics(batch, stage)
        return loss

    def _structure_metrics(self, batch, stage: str) -> None:
        """RMSD and energy gap of one-shot structures against the batch's reference structures."""
        selected = kind_mask(batch, self.reference_kinds)
        if stage == "val":
            budget = max(self.val_structures - self._generated, 0)
            selected &= torch.cumsum(selected.long(), 0) <= budget
        references = select_structures(batch, selected)
        if references is None:
            return
        n = int(references[keys.N_ATOMS].numel())
        self._generated += n
        generated = self.model.generate_positions(references, mode="one_shot", seed=0)
        rmsd = kabsch_rmsd(generated, references[keys.POSITIONS], references[keys.BATCH])
        moved = copy.copy(references)
        moved[keys.POSITIONS] = generated
        gap = self.model(moved, forces=False)[keys.ENERGY] - self.model(references, forces=False)[keys.ENERGY]
        for name, values in (("rmsd", rmsd), ("energy_gap", gap)):
            metric = self.structure_metrics[f"{stage}_{name}"]
            metric.update(values.detach())
            self.log(f"{stage}/{name}", metric, batch_size=n)
