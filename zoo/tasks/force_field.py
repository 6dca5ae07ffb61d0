"""The force-field task: energies and forces, with DeNS as an optional auxiliary training task."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torchmetrics
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from zoo.data import keys
from zoo.dens import DeNS
from zoo.tasks._base import STAGES, AtomisticTask
from zoo.tasks._outputs import METRICS, Output, energy_force_outputs


class ForceFieldTask(AtomisticTask):
    """Trains a :class:`~zoo.models.ForceFieldModel` (or any model returning ``energy`` and
    ``forces``) on energies (eV) and forces (eV/Å).

    Every stage logs the outputs' metrics (``{stage}/energy_mae``, ``{stage}/forces_rmse``, ...)
    and the energy per atom (``{stage}/energy_per_atom_mae`` and ``_rmse``). With ``dens``, each
    training batch is corrupted by the DeNS recipe: the energy is trained on the original
    structure's energy, the forces on the uncorrupted atoms only, and the denoising loss is added
    with the recipe's scheduled weight (``train/dens_loss``, ``train/dens_weight``). Validation and
    test are never corrupted and run under Lightning's default inference mode (the model leaves it
    to take gradients).

    Args:
        model: the energy model; for DeNS its backbone needs ``extra_node_irreps``.
        outputs: default: energy and forces, MSE, weights 1 and 10.
        dens: the DeNS recipe, or ``None`` to train on energies and forces alone.
        optimizer, lr_scheduler, monitor, pretrained, keep_pretrained_statistics: as
            :class:`AtomisticTask`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        outputs: Sequence[Output] | None = None,
        dens: DeNS | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        monitor: str = "val/loss",
        pretrained: str | None = None,
        keep_pretrained_statistics: bool = False,
    ):
        outputs = energy_force_outputs(outputs, "force-field")
        super().__init__(model, outputs, optimizer, lr_scheduler, monitor, pretrained, keep_pretrained_statistics)
        self.dens = None if dens is None else dens.attach(model)
        self.energy_per_atom = torch.nn.ModuleDict(
            {f"{stage}_energy_per_atom": torchmetrics.MetricCollection({m: METRICS[m]() for m in ("mae", "rmse")})
             for stage in STAGES}
        )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = getattr(self._trainer, "datamodule", None)
        if stage != "fit" or datamodule is None:
            return
        statistics = getattr(datamodule, "statistics", None)
        if self.dens is not None and statistics:
            self.dens.set_statistics(statistics)

    def as_calculator(self, **kwargs):
        """The model as an ASE calculator (see :class:`zoo.interfaces.ZooCalculator`; ``device``
        and ``dtype`` may differ from the model's, the calculator then works on a converted copy)."""
        from zoo.interfaces.ase import ZooCalculator

        return ZooCalculator(self.model, **kwargs)

    def compute_loss(self, batch, predictions, stage: str, atoms: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`AtomisticTask.compute_loss`, with the force terms restricted to ``atoms`` (a mask;
        no force term when it is empty)."""
        if keys.FORCES in batch and not torch.isfinite(batch[keys.FORCES]).all():
            raise ValueError(f"the {stage} batch has NaN or inf forces; remove or fix those structures in the data")
        outputs = None
        if atoms is not None:
            batch = copy.copy(batch)
            batch[keys.FORCES] = batch[keys.FORCES][atoms]
            predictions = {**predictions, keys.FORCES: predictions[keys.FORCES][atoms]}
            if not atoms.any():
                outputs = [o for o in self.outputs if o.name != keys.FORCES]
        loss = super().compute_loss(batch, predictions, stage, outputs)
        if keys.ENERGY in predictions and keys.ENERGY in batch:
            n_atoms = batch[keys.N_ATOMS].to(predictions[keys.ENERGY].dtype)
            metrics = self.energy_per_atom[f"{stage}_energy_per_atom"]
            metrics.update(predictions[keys.ENERGY].detach().reshape(-1) / n_atoms, batch[keys.ENERGY].reshape(-1) / n_atoms)
            batch_size = int(batch.num_graphs) if hasattr(batch, "num_graphs") else None
            self.log_dict({f"{stage}/energy_per_atom_{k}": m for k, m in metrics.items()}, batch_size=batch_size)
        return loss

    def training_loss(self, batch) -> torch.Tensor:
        if self.dens is None:
            return super().training_loss(batch)
        corruption = self.dens.corrupt(batch)
        predictions, dens_loss = self.dens(self.model, batch, corruption)
        loss = self.compute_loss(batch, predictions, "train", atoms=~corruption.mask)
        weight = self.dens.weight(self._progress())
        batch_size = int(batch.num_graphs) if hasattr(batch, "num_graphs") else None
        self.log("train/dens_loss", dens_loss, batch_size=batch_size)
        self.log("train/dens_weight", weight, batch_size=batch_size)
        return loss + weight * dens_loss

    def _progress(self) -> float:
        """Fraction of the training done, for the DeNS weight schedule (0 outside a trainer)."""
        if self._trainer is None:
            return 0.0
        total = self.trainer.estimated_stepping_batches
        return self.global_step / total if total and total != float("inf") else 0.0
