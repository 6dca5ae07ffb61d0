"""Hamiltonian training: supervised on labelled H, self-consistent (SCT) without labels, or both.

Self-consistency training (Zhang et al., ICML 2024) is the auxiliary loss
:class:`~zoo.losses.SelfConsistencyLoss`, ``‖H_θ − H[D(H_θ)]‖²``, which needs no labels.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info

from zoo.data import atom_ranges, keys, n_structures
from zoo.data.readers import append_base_hamiltonians, read_base_hamiltonians
from zoo.losses import Forward, OccupiedSpaceLoss, Output, SelfConsistencyLoss
from zoo.metrics import HamiltonianMetrics, onsite_mask, split_matrices
from zoo.models.hamiltonian import geometry_key
from zoo.qc.eigh import DEFAULT_BROADENING
from zoo.tasks._base import AtomisticTask

MODES = ("supervised", "sct", "mixed")
#: Training structures used to fit the on-site reference blocks at the start of a fit.
_REFERENCE_STRUCTURES = 64


class HamiltonianTask(AtomisticTask):
    """Trains a :class:`~zoo.models.HamiltonianModel` on labels, on self-consistency, or on both.

    * ``supervised``: the :class:`Output` list of the base task; by default QHNet's MAE + MSE on
      the flattened H (Hartree).
    * ``sct``: ``sct_weight * mean((H_θ − H[D(H_θ)])²)`` (Hartree²) on every molecule, labels
      unused (and not required): the auxiliary loss :class:`~zoo.losses.SelfConsistencyLoss`
      (``task.sct``). H[D] is built at the model's level of theory, except for the
      affordable-SCT options below; one :class:`~zoo.qc.fock.FockBuilder` per geometry is cached
      (grids and integrals are built once per structure, not per step).
    * ``mixed``: batches with labels get the supervised loss, and a ``sct_fraction`` of all
      batches also the SCT loss. A training loader may be a dict of loaders (Lightning's
      ``CombinedLoader``: ``{"labelled": ..., "unlabelled": ...}``); the labelled part then gets
      the supervised loss only and the other parts the SCT loss.

    With ``occupied_weight > 0``, labelled batches also get the occupied-space loss
    (:class:`~zoo.losses.OccupiedSpaceLoss`, ``task.occupied``): the fraction of the labels'
    occupied space that the predicted H's occupied orbitals miss, which is what an SCF guess needs.

    A step whose SCT loss or gradient is not finite, or whose gradient norm exceeds
    ``max_sct_grad_norm``, is skipped (weights and optimizer state untouched) and counted in
    ``train/skipped_steps``.

    Validation logs ``val/sct_loss`` in the ``sct`` and ``mixed`` modes; ``val/loss`` is the
    supervised loss when the validation set has labels and the SCT loss otherwise. Validation and
    test log the base outputs' losses and metrics plus, from
    :class:`~zoo.metrics.HamiltonianMetrics`, ``{stage}/hamiltonian_mae_{all,diagonal,off_diagonal}``,
    ``{stage}/orbital_energy_mae``, ``{stage}/orbital_cosine`` and HOMO/LUMO/gap errors (µEh).

    Args:
        model: a :class:`~zoo.models.HamiltonianModel`.
        mode: ``"supervised"``, ``"sct"`` or ``"mixed"``.
        outputs: supervised outputs (default: ``hamiltonian`` with the ``mae_mse`` loss).
        sct_weight: weight of the SCT loss in the total.
        occupied_weight: weight of the occupied-space loss (0: none; needs labelled ``overlap``
            and ``n_electrons``).
        sct_fraction: fraction of training batches that get the SCT loss (evenly spaced).
        sct_grid_level: DFT grid level of the SCT targets (default: the model's); level 1 costs
            about a third of level 3's XC work for ~1 µEh of Fock error.
        sct_density_fitting: density fitting for the SCT targets (default: the model's).
        sct_broadening: Lorentzian broadening (Hartree) of inverse orbital gaps in the
            eigensolver's backward, which keeps near-degenerate gradients finite.
        max_sct_grad_norm: gradient norm above which an SCT step is skipped.
        sct_cache_size: Fock builders kept (one per geometry, least recently used dropped).
        fit_reference: at the start of a fresh fit, set the on-site reference blocks from the
            training set (labels; in ``sct`` mode or without labels, H[D_MINAO]); see
            :meth:`~zoo.models.HamiltonianModel.fit_onsite_reference`.
        base_file: for a model with a base, an HDF5 file of base Hamiltonians kept from run to run
            (:mod:`zoo.data.readers.base_hamiltonians`): a fit reads those of its training and
            validation structures from it and computes and adds the others (a resumed run, a
            second seed or a control then starts at once).
        optimizer, lr_scheduler, monitor, pretrained, keep_pretrained_statistics: as in
            :class:`AtomisticTask`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        mode: str = "supervised",
        outputs: Sequence[Output] | None = None,
        sct_weight: float = 1.0,
        occupied_weight: float = 0.0,
        sct_fraction: float = 1.0,
        sct_grid_level: int | None = None,
        sct_density_fitting: bool | None = None,
        sct_broadening: float = DEFAULT_BROADENING,
        max_sct_grad_norm: float = 1e3,
        sct_cache_size: int = 4096,
        fit_reference: bool = True,
        base_file: str | None = None,
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        monitor: str = "val/loss",
        pretrained: str | None = None,
        keep_pretrained_statistics: bool = False,
    ):
        if outputs is None:
            outputs = [Output(name=keys.HAMILTONIAN, loss="mae_mse", metrics=["mae"])]
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not max_sct_grad_norm > 0:
            raise ValueError(f"max_sct_grad_norm must be > 0, got {max_sct_grad_norm}")
        overrides = {"grid_level": sct_grid_level, "density_fitting": sct_density_fitting}
        sct_level = dataclasses.replace(model.level, **{k: v for k, v in overrides.items() if v is not None})
        sct = SelfConsistencyLoss(sct_level, sct_weight, sct_fraction, sct_broadening, sct_cache_size)
        auxiliary = [] if mode == "supervised" else [sct]
        if occupied_weight > 0:
            auxiliary.append(OccupiedSpaceLoss(occupied_weight, sct_broadening))
        super().__init__(model, outputs, optimizer, lr_scheduler, monitor, pretrained, keep_pretrained_statistics,
                         auxiliary)
        self.mode = mode
        self.max_sct_grad_norm = max_sct_grad_norm
        self.fit_reference = fit_reference
        self.base_file = base_file
        self._step_has_sct = False
        self.register_buffer("skipped_steps", torch.zeros((), dtype=torch.long))
        self.hamiltonian_metrics = torch.nn.ModuleDict({s: HamiltonianMetrics() for s in ("val", "test")})

    # ------------------------------------------------------------------------------------------
    # setup: level of theory and reference blocks

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self._trainer is None:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        metadata = getattr(datamodule, "metadata", {}) or {}
        if "hamiltonian" in metadata:
            self.model.check_data(metadata["hamiltonian"])
        if stage == "fit" and self.model.base is not None and datamodule is not None:
            self._prepare_bases([getattr(datamodule, name, None) for name in
                                 ("train_dataset", "val_dataset", "unlabelled_dataset")])
        if (stage == "fit" and self.fit_reference and not self.pretrained and self.trainer.ckpt_path is None
                and getattr(datamodule, "train_dataset", None) is not None):
            self.model.fit_onsite_reference(self._reference_structures(datamodule.train_dataset))

    def _prepare_bases(self, datasets) -> None:
        """The base Hamiltonian of every structure the fit will see (SCT's unlabelled ones too),
        before the first step, with progress: otherwise the first epoch computes them (seconds
        each, one PySCF Fock build) without a word for minutes. With ``base_file``, those stored there are read, and the
        others are added to it as they are computed (every 50, so an interrupted run keeps them)."""
        structures = [data for dataset in datasets if dataset is not None for data in dataset.raw]
        stored, new = set(), []
        keep = self.base_file is not None and self.trainer.is_global_zero  # one writer under DDP
        if self.base_file is not None:
            for z, positions, matrix in read_base_hamiltonians(self.base_file, self.model.base, self.model.metadata()):
                self.model.remember_base(z, positions, matrix)
                stored.add(geometry_key(z, positions))
        began = shown = time.perf_counter()
        for number, data in enumerate(structures, 1):
            z, positions = data[keys.ATOMIC_NUMBERS], data[keys.POSITIONS]
            matrix = self.model.base_matrices(z, positions, torch.zeros_like(z))
            entry = (z.numpy(), positions.double().numpy())
            key = geometry_key(*entry)
            if keep and key not in stored:
                stored.add(key)
                n_ao = math.isqrt(matrix.numel())
                new.append((*entry, matrix.reshape(n_ao, n_ao).numpy()))
            if len(new) >= 50 or (new and number == len(structures)):
                append_base_hamiltonians(self.base_file, self.model.base, self.model.metadata(), new)
                new = []
            now = time.perf_counter()
            if now - shown > 10 or number == len(structures):
                shown = now
                rank_zero_info(f"zoo: base Hamiltonians ({self.model.base}) of the structures to fit: "
                               f"{number}/{len(structures)} in {now - began:.0f} s")

    def _reference_structures(self, dataset):
        structures = [dataset[i] for i in range(min(len(dataset), _REFERENCE_STRUCTURES))]
        if self.mode != "sct" and all(keys.HAMILTONIAN in s for s in structures):
            return structures
        # SCT uses no labels: the Fock matrix of PySCF's MINAO guess density is a label-free start
        level = self.model.level
        out = []
        for s in structures[:8]:
            mf = level.build_scf(level.build_mole(s[keys.ATOMIC_NUMBERS].numpy(), s[keys.POSITIONS].double().numpy()))
            fock = mf.get_fock(dm=mf.get_init_guess(key="minao"))
            out.append({keys.ATOMIC_NUMBERS: s[keys.ATOMIC_NUMBERS], keys.POSITIONS: s[keys.POSITIONS],
                        keys.HAMILTONIAN: torch.as_tensor(fock).reshape(-1)})
        return out

    # ------------------------------------------------------------------------------------------
    # steps

    def self_consistency_loss(self, batch, hamiltonian: torch.Tensor) -> torch.Tensor:
        """The SCT loss of ``hamiltonian`` on ``batch`` without its weight (see
        :meth:`~zoo.losses.SelfConsistencyLoss.mean_squared_residual`), Hartree²."""
        return self.sct.mean_squared_residual(batch, hamiltonian)

    def _losses(self, batch, stage: str, sct: bool) -> torch.Tensor | None:
        predictions = self(batch)
        total = None
        # labels train only outside SCT mode, but are always measured in validation and test;
        # {stage}/loss is theirs alone, so that a labelled validation set selects on the labels
        if keys.HAMILTONIAN in batch and (stage != "train" or self.mode != "sct"):
            total = self.compute_loss(batch, predictions, stage)
        if self.auxiliary_losses:
            step = self.make_step(batch, Forward(predictions), stage)
            terms = self.auxiliary_terms(step, skip=() if sct else (SelfConsistencyLoss.name,))
            if terms:
                weighted = self.weighted_terms(terms, stage, n_structures(batch))
                total = weighted if total is None else total + weighted
        if stage != "train" and keys.HAMILTONIAN in batch:
            self._update_metrics(batch, predictions[keys.HAMILTONIAN], stage)
        return total

    def training_step(self, batch, batch_idx):
        self._step_has_sct = self.mode != "supervised" and self.sct.due(self.progress())
        # with separate loaders the labelled part is trained on its labels only: self-consistency
        # there would cost a Fock build per molecule for what the labels already teach
        parts = [(part, self._step_has_sct and name != "labelled")
                 for name, part in (batch.items() if isinstance(batch, dict) else [(None, batch)])]
        losses = [loss for part, sct in parts if (loss := self._losses(part, "train", sct)) is not None]
        if not losses:
            raise ValueError(f"mode {self.mode!r} found neither labels ({keys.HAMILTONIAN!r}) nor an SCT step in this batch")
        total = sum(losses)
        if not self._step_has_sct and not torch.isfinite(total):
            raise FloatingPointError(f"supervised loss is {total.item()} at step {self.global_step}; lower the learning rate")
        return total

    def validation_step(self, batch, batch_idx):
        # SCT runs label-free: its validation loss is measured whenever the mode trains on it
        sct = self.mode != "supervised"
        loss = self._losses(batch, "val", sct)
        if loss is not None:
            self.require_finite_loss(loss, "val", batch_idx)
        if sct and keys.HAMILTONIAN not in batch:  # without labels, model selection follows SCT
            self.log("val/loss", loss, batch_size=n_structures(batch), sync_dist=True)
        return loss

    def test_step(self, batch, batch_idx):
        loss = self._losses(batch, "test", sct=False)
        return loss if loss is None else self.require_finite_loss(loss, "test", batch_idx)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        loss = optimizer_closure()
        if self._step_has_sct:
            grads = [p.grad for p in self.parameters() if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])) if grads \
                else torch.zeros(())
            if loss is None or not torch.isfinite(loss) or not torch.isfinite(norm) or norm > self.max_sct_grad_norm:
                # never step on a poisoned gradient: Adam's moments would keep it for many steps
                optimizer.zero_grad()
                self.skipped_steps += 1
                return
        optimizer.step()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.log("train/skipped_steps", self.skipped_steps.float())

    # ------------------------------------------------------------------------------------------
    # Hamiltonian metrics (µEh)

    def _update_metrics(self, batch, hamiltonian: torch.Tensor, stage: str) -> None:
        z = batch[keys.ATOMIC_NUMBERS]
        n_ao = batch[keys.N_AO].reshape(-1)
        predictions = split_matrices(hamiltonian.detach(), n_ao)
        targets = split_matrices(batch[keys.HAMILTONIAN], n_ao)
        masks = [onsite_mask(z[a:b].cpu().numpy(), self.model.level.basis) for a, b in atom_ranges(batch)]
        overlaps = n_occ = None
        if keys.OVERLAP in batch and keys.N_ELECTRONS in batch:
            overlaps = split_matrices(batch[keys.OVERLAP], n_ao)
            n_occ = [int(n) // 2 for n in batch[keys.N_ELECTRONS].reshape(-1)]
        self.hamiltonian_metrics[stage].update(predictions, targets, masks, overlaps, n_occ)

    def _log_hamiltonian_metrics(self, stage: str) -> None:
        metric = self.hamiltonian_metrics[stage]
        if metric.update_count:
            self.log_dict({f"{stage}/{k}": v.float() for k, v in metric.compute().items()}, sync_dist=False)
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_hamiltonian_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_hamiltonian_metrics("test")
