r"""Self-consistency training (Zhang et al., ICML 2024): a Hamiltonian loss that needs no labels.

A predicted :math:`H_\theta` defines orbitals (:math:`H C = S C \varepsilon`), hence a density
:math:`D(H_\theta)`, hence a Fock matrix :math:`H[D(H_\theta)]`; the loss
:math:`\lVert H_\theta - H[D(H_\theta)] \rVert^2` vanishes exactly at the SCF solution. Its
gradient flows through the generalised eigensolver (:func:`zoo.qc.eigh.generalized_eigh`) and
through the Fock build (:class:`zoo.qc.fock.FockBuilder`, PySCF's exact linear response as backward).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from zoo.data import atom_ranges, keys
from zoo.losses._auxiliary import AuxiliaryLoss, Progress, Step
from zoo.metrics import split_matrices
from zoo.qc import ao
from zoo.qc.eigh import DEFAULT_BROADENING
from zoo.qc.fock import FockBuilder
from zoo.qc.level import LevelOfTheory


class SelfConsistencyLoss(AuxiliaryLoss):
    """``mean((H_θ − H[D(H_θ)])²)`` (Hartree²) over every matrix entry of a batch's predicted
    ``hamiltonian``; labels are not read.

    H[D] is built at ``level``, which must be the model's level of theory (a coarser grid or
    density fitting are the affordable-SCT options). One :class:`~zoo.qc.fock.FockBuilder` per
    geometry is cached, so grids and integrals are built once per structure, not per step. In
    training the loss is computed on a ``fraction`` of the steps, evenly spaced; in validation on
    every batch.

    Args:
        level: the level of theory of the targets H[D].
        weight: the loss's weight in the task's total.
        fraction: fraction of training steps with the loss.
        broadening: Lorentzian broadening (Hartree) of inverse orbital gaps in the eigensolver's
            backward, which keeps near-degenerate gradients finite.
        cache_size: Fock builders kept (one per geometry, least recently used dropped).
    """

    name = "sct"
    stages = ("train", "val")

    def __init__(self, level: LevelOfTheory, weight: float = 1.0, fraction: float = 1.0,
                 broadening: float = DEFAULT_BROADENING, cache_size: int = 4096):
        super().__init__(weight)
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"the SCT fraction of steps must be in [0, 1], got {fraction}")
        self.level = level
        self.fraction = fraction
        self.broadening = broadening
        self.cache_size = cache_size
        self._builders: OrderedDict = OrderedDict()

    def due(self, progress: Progress) -> bool:
        """Whether the training step at ``progress`` gets the loss: step s does when
        ``floor((s + 1) f) > floor(s f)``, which spaces a fraction f of the steps evenly."""
        step = progress.step
        return math.floor((step + 1) * self.fraction) > math.floor(step * self.fraction)

    def active(self, step: Step) -> bool:
        return step.stage != "train" or self.due(step.progress)

    def forward(self, step: Step) -> torch.Tensor:
        return self.mean_squared_residual(step.batch, step.predictions[keys.HAMILTONIAN])

    def mean_squared_residual(self, batch, hamiltonian: torch.Tensor) -> torch.Tensor:
        """``mean((H − H[D(H)])²)`` over all matrix entries of ``batch`` for its flattened
        PySCF-order ``hamiltonian`` (one molecule after another), Hartree²."""
        z, pos = batch[keys.ATOMIC_NUMBERS], batch[keys.POSITIONS]
        molecules = atom_ranges(batch)
        n_ao = [int(ao.ao_offsets(z[a:b].cpu().numpy(), self.level.basis)[-1]) for a, b in molecules]
        total, count = 0.0, 0
        # in float64 whatever the model's dtype, as the occupied-space loss: D(H) comes from the
        # eigenvectors of H in a basis whose S has near-null directions
        for (a, b), h in zip(molecules, split_matrices(hamiltonian.double(), n_ao)):
            residual = self._builder(z[a:b], pos[a:b]).self_consistency_residual(h, broadening=self.broadening)
            total = total + residual.square().sum()
            count += residual.numel()
        return (total / count).to(hamiltonian.dtype)

    def _builder(self, z: torch.Tensor, pos: torch.Tensor) -> FockBuilder:
        z_np, pos_np = z.cpu().numpy(), pos.detach().cpu().double().numpy()
        key = (z_np.tobytes(), pos_np.tobytes())
        builder = self._builders.get(key)
        if builder is None:
            builder = FockBuilder((z_np, pos_np), self.level)
            self._builders[key] = builder
            if len(self._builders) > self.cache_size:
                self._builders.popitem(last=False)
        else:
            self._builders.move_to_end(key)
        return builder

    def extra_repr(self) -> str:
        return f"weight={self.loss_weight}, fraction={self.fraction}, {self.level.describe()}"
