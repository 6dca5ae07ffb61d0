r"""The occupied-space loss: how much of the reference occupied space a predicted Hamiltonian misses.

An SCF started from a predicted H needs the occupied orbitals of H to be right, not H itself: a
small error in H along near-null directions of S, or in the on-site blocks of a large molecule,
can turn into wrong occupied orbitals (measured on QM9, issue 19: H MAE 824 µEh yet orbital
cosine 0.23). With :math:`P = C_\text{occ} C_\text{occ}^\top` the projector on the occupied
orbitals (:math:`C^\top S C = 1`), the loss of one molecule is

.. math::

    L = 1 - \frac{\operatorname{Tr}(P_\theta S P_\text{ref} S)}{n_\text{occ}}
      = 1 - \frac{\lVert C_\text{ref,occ}^\top S C_{\theta,\text{occ}} \rVert_F^2}{n_\text{occ}},

the fraction of the reference occupied space outside the predicted one: 0 when the occupied
spaces coincide (whatever H does to the virtual orbitals or within the occupied space), 1 when
they are S-orthogonal. It is invariant to rotations of the molecule and to any mixing of the
occupied orbitals among themselves, so degenerate occupied levels cost nothing; its gradient
flows through :func:`zoo.qc.eigh.generalized_eigh` and is finite while the predicted
HOMO–LUMO gap is open.
"""

from __future__ import annotations

import torch

from zoo.data import keys
from zoo.losses._auxiliary import AuxiliaryLoss, Step
from zoo.metrics import split_matrices
from zoo.qc.eigh import DEFAULT_BROADENING, generalized_eigh


def occupied_space_loss(hamiltonian: torch.Tensor, reference: torch.Tensor, overlap: torch.Tensor, n_occ: int,
                        broadening: float = DEFAULT_BROADENING) -> torch.Tensor:
    """The occupied-space loss (a fraction in [0, 1]) of one molecule's ``[n, n]`` matrices.

    Args:
        hamiltonian: the predicted H (Hartree); the gradient flows through it.
        reference: the reference H (its occupied orbitals are the target; no gradient).
        overlap: the AO overlap S.
        n_occ: the number of doubly occupied orbitals.
        broadening: Lorentzian broadening (Hartree) of inverse orbital gaps in the eigensolver's backward.

    Example:
        >>> s = torch.eye(3, dtype=torch.float64)
        >>> h = torch.diag(torch.tensor([-1.0, 0.5, 1.0], dtype=torch.float64))
        >>> float(occupied_space_loss(2.0 * h + 0.3 * s, h, s, n_occ=1))  # same orbitals
        0.0
        >>> swapped = torch.diag(torch.tensor([0.5, -1.0, 1.0], dtype=torch.float64))
        >>> float(occupied_space_loss(swapped, h, s, n_occ=1))  # the other orbital is occupied
        1.0
    """
    n_occ = int(n_occ)
    if not 0 < n_occ < hamiltonian.shape[-1]:
        raise ValueError(f"n_occ={n_occ} must leave at least one occupied and one virtual orbital")
    with torch.no_grad():
        _, c_ref = generalized_eigh(reference, overlap)
    _, c = generalized_eigh(hamiltonian, overlap, broadening=broadening)
    overlap_of_spaces = c_ref[:, :n_occ].mT @ overlap @ c[:, :n_occ]
    return 1.0 - overlap_of_spaces.square().sum() / n_occ


class OccupiedSpaceLoss(AuxiliaryLoss):
    """The mean :func:`occupied_space_loss` of a batch's molecules, beside the supervised H loss.

    Reads the predicted ``hamiltonian`` and the batch's labelled ``hamiltonian``, ``overlap`` and
    ``n_electrons`` (closed shell); a batch without them gets no loss. Computed in training and
    validation (``{stage}/occupied_loss``).

    Args:
        weight: the loss's weight in the task's total (the H loss is in Hartree, this one a fraction).
        broadening: see :func:`occupied_space_loss`.
    """

    name = "occupied"
    stages = ("train", "val")

    def __init__(self, weight: float = 1.0, broadening: float = DEFAULT_BROADENING):
        super().__init__(weight)
        self.broadening = broadening

    def forward(self, step: Step) -> torch.Tensor | None:
        batch = step.batch
        if not all(key in batch for key in (keys.HAMILTONIAN, keys.OVERLAP, keys.N_ELECTRONS)):
            return None
        n_ao = batch[keys.N_AO].reshape(-1)
        predicted = split_matrices(step.predictions[keys.HAMILTONIAN], n_ao)
        references = split_matrices(batch[keys.HAMILTONIAN], n_ao)
        overlaps = split_matrices(batch[keys.OVERLAP], n_ao)
        electrons = batch[keys.N_ELECTRONS].reshape(-1).tolist()
        # in float64 whatever the model's dtype: the eigenvectors of H in a basis whose S has
        # near-null directions lose digits that float32 does not have
        losses = [occupied_space_loss(h.double(), r.double(), s.double(), int(n) // 2, self.broadening)
                  for h, r, s, n in zip(predicted, references, overlaps, electrons, strict=True)]
        return torch.stack(losses).mean().to(step.predictions[keys.HAMILTONIAN].dtype)

    def extra_repr(self) -> str:
        return f"weight={self.loss_weight}, broadening={self.broadening}"
