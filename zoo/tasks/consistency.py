"""The multi-task physical-consistency task: energy, forces, structure denoising, and the consistency
losses that tie the structure generator to the energy model (Ren et al., NeurIPS 2024)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torchmetrics
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from zoo.data import keys
from zoo.metrics.structure import kabsch_rmsd
from zoo.tasks._base import STAGES, AtomisticTask
from zoo.tasks._outputs import Output, energy_force_outputs

#: Structure kinds of the consistency data (``info["structure_kind"]``, see :mod:`zoo.data.keys`).
EQUILIBRIUM_KINDS = ("xtb_optimized",)
REFERENCE_KINDS = ("xtb_optimized", "qm9_reference")


class ConsistencyTask(AtomisticTask):
    """Trains a :class:`~zoo.models.ConsistencyModel` on heterogeneous data in two stages.

    Losses, each with its weight from the recipe:

    - ``energy`` and ``forces`` (the task's outputs; MSE standardised by the training set's
      per-atom energy and force standard deviations when ``standardize_losses``), only on
      structures whose labels exist (``has_energy`` / ``has_forces`` masks of
      ``read_ase(..., mask_missing=True)``); forces from ``force_start_epoch`` on;
    - ``denoising``: the v-MSE of the diffusion (:meth:`~zoo.models.ConsistencyModel.denoising_loss`)
      on equilibrium structures (``structure_kind`` in ``equilibrium_kinds``: the cheap
      structures the generator learns);
    - ``optimality`` (stage 2): the frozen energy model's energy per atom of one-shot structures
      generated from the equilibrium structures noised to a time up to ``optimality_max_time``
      (:meth:`~zoo.models.ConsistencyModel.optimality_loss`; logged as the energy gap to the
      input structures, ``train/energy_gap``);
    - ``score`` (stage 2): score consistency with the Boltzmann distribution at ``kT`` at times
      up to ``score_max_time``, on every structure
      (:meth:`~zoo.models.ConsistencyModel.score_consistency_loss`).

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
        super().__init__(model, outputs, optimizer, lr_scheduler, monitor, pretrained, keep_pretrained_statistics)
        if min(denoising_weight, optimality_weight, score_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        if not (0 < optimality_max_time <= 1 and 0 < score_max_time <= 1):
            raise ValueError("optimality_max_time and score_max_time are fractions of T in (0, 1]")
        if not kT > 0:
            raise ValueError(f"kT must be positive (eV), got {kT}")
        self.denoising_weight, self.optimality_weight, self.score_weight = denoising_weight, optimality_weight, score_weight
        self.consistency_start_epoch = int(consistency_start_epoch)
        self.force_start_epoch = self.consistency_start_epoch if force_start_epoch is None else int(force_start_epoch)
        self.kT = float(kT)
        self.optimality_max_time, self.score_max_time = optimality_max_time, score_max_time
        self.equilibrium_kinds, self.reference_kinds = list(equilibrium_kinds), list(reference_kinds)
        self.val_structures = int(val_structures)
        self.standardize_losses = standardize_losses
        self.structure_metrics = torch.nn.ModuleDict({
            f"{stage}_{name}": torchmetrics.MeanMetric() for stage in STAGES if stage != "train"
            for name in ("rmsd", "energy_gap")
        })
        self._generated = 0

    def setup(self, stage: str) -> None:
        super().setup(stage)
        statistics = getattr(getattr(self._trainer, "datamodule", None), "statistics", None)
        if stage != "fit" or not self.standardize_losses or not statistics:
            return
        for output in self.outputs:
            std = statistics.get(output.target, {}).get("std")
            if std:
                output.scale = float(std)

    # --- training ------------------------------------------------------------------------------

    def training_loss(self, batch) -> torch.Tensor:
        epoch = self.current_epoch
        forces = epoch >= self.force_start_epoch and any(o.name == keys.FORCES for o in self.outputs)
        predictions = self.model(batch, forces=forces)
        terms = {}
        selected = self._kind_mask(batch, self.equilibrium_kinds)
        equilibrium = _select(batch, selected)
        if equilibrium is not None:
            terms["denoising"] = (self.denoising_weight, self.model.denoising_loss(equilibrium))
        if epoch >= self.consistency_start_epoch:
            if equilibrium is not None and self.optimality_weight > 0:
                t = self._times(equilibrium, self.optimality_max_time)
                loss, gap = self.model.optimality_loss(equilibrium, t, predictions[keys.ENERGY][selected])
                terms["optimality"] = (self.optimality_weight, loss)
                self.log("train/energy_gap", gap.mean(), batch_size=int(gap.numel()))
            if self.score_weight > 0:
                t = self._times(batch, self.score_max_time)
                terms["score"] = (self.score_weight, self.model.score_consistency_loss(batch, t, self.kT))
        return self._loss(batch, predictions, "train", terms, forces)

    def _times(self, batch, fraction: float) -> torch.Tensor:
        """Integer noise times uniform in 1..fraction*T, one per molecule of ``batch``."""
        highest = max(1, round(fraction * self.model.schedule.timesteps))
        n = int(batch[keys.N_ATOMS].numel())
        return torch.randint(1, highest + 1, (n,), device=batch[keys.POSITIONS].device)

    def _loss(self, batch, predictions, stage: str, terms: dict, forces: bool = True) -> torch.Tensor:
        """:meth:`AtomisticTask.compute_loss` on the labels that exist (their masks) plus ``terms``."""
        batch, predictions = copy.copy(batch), dict(predictions)
        outputs = []
        for output in self.outputs:
            if output.name == keys.FORCES and not forces:
                continue
            mask = keys.MASKS.get(output.target)
            if mask in batch:
                structures = batch[mask].reshape(-1).bool()
                rows = structures[batch[keys.BATCH]] if output.target in keys.PER_ATOM else structures
                if not rows.any():
                    continue
                batch[output.target] = batch[output.target][rows]
                predictions[output.name] = predictions[output.name][rows]
            outputs.append(output)
        return self.compute_loss(batch, predictions, stage, outputs, terms)

    def _kind_mask(self, batch, kinds: Sequence[str]) -> torch.Tensor:
        """[n_structures] bool: the structures whose ``structure_kind`` is one of ``kinds`` (all if
        the data name no kinds)."""
        n = int(batch[keys.N_ATOMS].numel())
        device = batch[keys.POSITIONS].device
        if keys.STRUCTURE_KIND not in batch:
            return torch.ones(n, dtype=torch.bool, device=device)
        found = batch[keys.STRUCTURE_KIND]
        found = [found] if isinstance(found, str) else found
        return torch.tensor([kind in kinds for kind in found], dtype=torch.bool, device=device)

    # --- evaluation ----------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._generated = 0

    def validation_step(self, batch, batch_idx):
        return self._evaluate(batch, batch_idx, "val")

    def test_step(self, batch, batch_idx):
        return self._evaluate(batch, batch_idx, "test")

    def _evaluate(self, batch, batch_idx: int, stage: str) -> torch.Tensor:
        predictions = self.model(batch)
        terms = {}
        equilibrium = _select(batch, self._kind_mask(batch, self.equilibrium_kinds))
        if equilibrium is not None:
            generator = torch.Generator(device=batch[keys.POSITIONS].device).manual_seed(batch_idx)
            terms["denoising"] = (self.denoising_weight, self.model.denoising_loss(equilibrium, generator=generator))
        loss = self.require_finite_loss(self._loss(batch, predictions, stage, terms), stage, batch_idx)
        self._structure_metrics(batch, stage)
        return loss

    def _structure_metrics(self, batch, stage: str) -> None:
        """RMSD and energy gap of one-shot structures against the batch's reference structures."""
        selected = self._kind_mask(batch, self.reference_kinds)
        if stage == "val":
            budget = max(self.val_structures - self._generated, 0)
            selected &= torch.cumsum(selected.long(), 0) <= budget
        references = _select(batch, selected)
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


def _select(batch, mask: torch.Tensor):
    """The structures of a PyG batch where ``mask`` is true, as a new batch (``None`` if none)."""
    from torch_geometric.data import Batch

    if not bool(mask.any()):
        return None
    if bool(mask.all()):
        return batch
    return Batch.from_data_list(batch.index_select(mask.nonzero().reshape(-1).tolist()))
