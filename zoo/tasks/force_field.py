"""The force-field task: energies and forces, with DeNS as an optional auxiliary training task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torchmetrics
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from zoo.data import keys, n_structures
from zoo.dens import DeNS
from zoo.losses import METRICS, Output, energy_force_outputs, label_mask
from zoo.tasks._base import STAGES, AtomisticTask


class ForceFieldTask(AtomisticTask):
    """Trains a :class:`~zoo.models.ForceFieldModel` (or any model returning ``energy`` and
    ``forces``) on energies (eV) and forces (eV/Å).

    Every stage logs the outputs' metrics (``{stage}/energy_mae``, ``{stage}/forces_rmse``, ...)
    and the energy per atom (``{stage}/energy_per_atom_mae`` and ``_rmse``). With ``dens`` (an
    auxiliary loss, ``task.dens``), each training batch is corrupted by the DeNS recipe: the energy
    is trained on the original structure's energy, the forces on the uncorrupted atoms only, and
    the denoising loss is added with the recipe's scheduled weight (``train/dens_loss``,
    ``train/dens_weight``). Validation and test are never corrupted and run under Lightning's
    default inference mode (the model leaves it to take gradients). Structures without an energy
    or force label (their masks, see :func:`~zoo.losses.label_mask`) are not trained on there.

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
        auxiliary = [] if dens is None else [dens.attach(model)]
        super().__init__(model, outputs, optimizer, lr_scheduler, monitor, pretrained, keep_pretrained_statistics,
                         auxiliary)
        self.energy_per_atom = torch.nn.ModuleDict(
            {f"{stage}_energy_per_atom": torchmetrics.MetricCollection({m: METRICS[m]() for m in ("mae", "rmse")})
             for stage in STAGES}
        )

    def compute_loss(self, batch, predictions, stage: str, outputs: Sequence[Output] | None = None,
                     terms: Mapping[str, tuple[float, torch.Tensor]] | None = None,
                     atoms: torch.Tensor | None = None, structures: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`AtomisticTask.compute_loss`, refusing non-finite forces, and the energy per atom's
        metrics on the structures with an energy label."""
        if keys.FORCES in batch and not torch.isfinite(batch[keys.FORCES]).all():
            raise ValueError(f"the {stage} batch has NaN or inf forces; remove or fix those structures in the data")
        loss = super().compute_loss(batch, predictions, stage, outputs, terms, atoms, structures)
        if keys.ENERGY in predictions and keys.ENERGY in batch:
            labelled = label_mask(batch, keys.ENERGY)
            if structures is not None:
                labelled = structures if labelled is None else labelled & structures
            rows = slice(None) if labelled is None else labelled
            n_atoms = batch[keys.N_ATOMS].reshape(-1)[rows].to(predictions[keys.ENERGY].dtype)
            if n_atoms.numel():
                metrics = self.energy_per_atom[f"{stage}_energy_per_atom"]
                metrics.update(predictions[keys.ENERGY].detach().reshape(-1)[rows] / n_atoms,
                               batch[keys.ENERGY].reshape(-1)[rows] / n_atoms)
                self.log_dict({f"{stage}/energy_per_atom_{k}": m for k, m in metrics.items()},
                              batch_size=n_structures(batch))
        return loss
