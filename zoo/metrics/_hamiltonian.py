"""Hamiltonian accuracy: H MAE (all, on-site, off-site), orbital energies, orbital coefficients, HOMO/LUMO.

Every figure is in µEh except the cosine similarity (a fraction). The functions and the
:class:`HamiltonianMetrics` torchmetrics class share one implementation (the ``_*_sums``
helpers): the functions divide the sums of one call, the metric accumulates them over batches
and processes (DDP) first, so both report the same numbers on the same data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torchmetrics

from zoo.qc.eigh import generalized_eigh

#: Hartree -> µEh.
MICRO_HARTREE = 1e6
#: Orbitals whose target energies differ by less than this (Hartree) are one degenerate set.
DEGENERACY_TOLERANCE = 1e-4


def split_matrices(flat: torch.Tensor, n_ao) -> list[torch.Tensor]:
    """The per-molecule ``[n, n]`` matrices of a batch's flattened, concatenated AO matrices."""
    sizes = [int(n) for n in torch.as_tensor(n_ao).reshape(-1)]
    if sum(n * n for n in sizes) != flat.numel():
        raise ValueError(f"{flat.numel()} entries do not hold matrices of {sizes} AOs")
    return [m.reshape(n, n) for m, n in zip(torch.split(flat, [n * n for n in sizes]), sizes)]


def onsite_mask(atomic_numbers, basis: str) -> torch.Tensor:
    """``[n_ao, n_ao]`` bool: True inside the diagonal (same-atom) blocks of a molecule's AO matrix."""
    from zoo.qc import ao

    offsets = ao.ao_offsets(np.asarray(atomic_numbers), basis)
    atom = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return torch.as_tensor(atom[:, None] == atom[None, :])


def _hamiltonian_sums(prediction: torch.Tensor, target: torch.Tensor, onsite: torch.Tensor) -> torch.Tensor:
    """``[6]``: sums of |error| over all, on-site and off-site entries, then the three counts."""
    if prediction.shape != target.shape or onsite.shape != target.shape:
        raise ValueError(f"shapes differ: prediction {tuple(prediction.shape)}, target "
                         f"{tuple(target.shape)}, on-site mask {tuple(onsite.shape)}")
    error = (prediction.detach() - target).abs().double()
    onsite = onsite.to(error.device)
    return torch.stack([
        error.sum(), error[onsite].sum(), error[~onsite].sum(),
        torch.tensor(float(error.numel())), onsite.sum().double(), (~onsite).sum().double(),
    ])


def _occupied_cosines(predicted: torch.Tensor, target: torch.Tensor, target_energies: torch.Tensor,
                      tolerance: float) -> torch.Tensor:
    """|cos| of each predicted occupied orbital with the span of its degenerate target set.

    Orbital signs are arbitrary and degenerate orbitals mix freely, so orbital k is compared
    with its projection onto the target orbitals degenerate with it (Euclidean, as QHNet
    compares coefficient vectors); for a non-degenerate orbital this is |cos(c_pred, c_target)|.
    """
    cosines = []
    start = 0
    n = target.shape[1]
    while start < n:
        stop = start + 1
        while stop < n and target_energies[stop] - target_energies[stop - 1] < tolerance:
            stop += 1
        basis, _ = torch.linalg.qr(target[:, start:stop])
        vectors = predicted[:, start:stop]
        projected = basis.T @ vectors
        cosines.append(projected.norm(dim=0) / vectors.norm(dim=0))
        start = stop
    return torch.cat(cosines)


def _orbital_sums(prediction: torch.Tensor, target: torch.Tensor, overlap: torch.Tensor, n_occ: int,
                  tolerance: float = DEGENERACY_TOLERANCE) -> torch.Tensor:
    """``[6]``: sum of occupied |Δε|, number of occupied orbitals, sum of cosines, |ΔHOMO|, |ΔLUMO|, |Δgap|."""
    n_occ = int(n_occ)
    if not 0 < n_occ < target.shape[-1]:
        raise ValueError(f"n_occ={n_occ} must leave at least one occupied and one virtual orbital")
    prediction, target, overlap = (m.detach().double() for m in (prediction, target, overlap))
    eps_p, c_p = generalized_eigh(prediction, overlap)
    eps_t, c_t = generalized_eigh(target, overlap)
    # the band edges are taken beyond the degenerate window: a tolerance-sized tie does not move them
    homo, lumo = (eps_p[n_occ - 1] - eps_t[n_occ - 1]).abs(), (eps_p[n_occ] - eps_t[n_occ]).abs()
    gap = ((eps_p[n_occ] - eps_p[n_occ - 1]) - (eps_t[n_occ] - eps_t[n_occ - 1])).abs()
    cosines = _occupied_cosines(c_p[:, :n_occ], c_t[:, :n_occ], eps_t[:n_occ], tolerance)
    return torch.stack([
        (eps_p[:n_occ] - eps_t[:n_occ]).abs().sum(), torch.tensor(float(n_occ), dtype=torch.float64),
        cosines.sum(), homo, lumo, gap,
    ]).cpu()


def hamiltonian_mae(prediction: torch.Tensor, target: torch.Tensor, onsite: torch.Tensor | None = None) -> dict:
    """MAE of one H (or matching lists of them), µEh: ``{"all", "diagonal", "off_diagonal"}``.

    ``onsite`` is the mask of same-atom blocks (:func:`onsite_mask`); without it only ``"all"``.
    """
    predictions, targets = _as_lists(prediction, target)
    onsites = [torch.zeros_like(t, dtype=torch.bool) for t in targets] if onsite is None else \
        (list(onsite) if isinstance(onsite, (list, tuple)) else [onsite])
    sums = sum(_hamiltonian_sums(p, t, m) for p, t, m in zip(predictions, targets, onsites))
    result = {"all": float(sums[0] / sums[3] * MICRO_HARTREE)}
    if onsite is not None:
        result["diagonal"] = float(sums[1] / sums[4] * MICRO_HARTREE)
        result["off_diagonal"] = float(sums[2] / sums[5] * MICRO_HARTREE)
    return result


def orbital_metrics(prediction, target, overlap, n_occ, tolerance: float = DEGENERACY_TOLERANCE) -> dict:
    """Orbital accuracy of one H (or lists), µEh and fractions.

    Returns ``{"orbital_energy_mae"`` (occupied orbitals), ``"orbital_cosine"`` (mean over occupied
    orbitals, degeneracy-aware, 1 = identical up to signs), ``"homo_error"``, ``"lumo_error"``,
    ``"gap_error"}`` (absolute errors averaged over molecules).
    """
    predictions, targets = _as_lists(prediction, target)
    overlaps = list(overlap) if isinstance(overlap, (list, tuple)) else [overlap]
    n_occs = list(n_occ) if isinstance(n_occ, (list, tuple)) else [n_occ]
    sums = sum(_orbital_sums(p, t, s, n, tolerance) for p, t, s, n in zip(predictions, targets, overlaps, n_occs))
    return _orbital_result(sums, len(predictions))


def _orbital_result(sums: torch.Tensor, n_molecules) -> dict:
    n_molecules = float(n_molecules)
    return {
        "orbital_energy_mae": float(sums[0] / sums[1] * MICRO_HARTREE),
        "orbital_cosine": float(sums[2] / sums[1]),
        "homo_error": float(sums[3] / n_molecules * MICRO_HARTREE),
        "lumo_error": float(sums[4] / n_molecules * MICRO_HARTREE),
        "gap_error": float(sums[5] / n_molecules * MICRO_HARTREE),
    }


def _as_lists(prediction, target):
    if isinstance(prediction, (list, tuple)):
        if len(prediction) != len(target):
            raise ValueError(f"{len(prediction)} predictions but {len(target)} targets")
        return list(prediction), list(target)
    return [prediction], [target]


class HamiltonianMetrics(torchmetrics.Metric):
    """Accumulated H and orbital metrics over batches (and DDP processes), µEh.

    ``update`` takes lists of per-molecule ``[n, n]`` matrices (see :func:`split_matrices`): the
    predicted and target H, the on-site masks and, for the orbital metrics, the overlaps and the
    numbers of occupied orbitals. ``compute`` returns the keys of :func:`hamiltonian_mae`
    (prefixed ``hamiltonian_mae_``) and, once orbitals were given, of :func:`orbital_metrics`.
    """

    full_state_update = False

    def __init__(self, tolerance: float = DEGENERACY_TOLERANCE, **kwargs):
        super().__init__(**kwargs)
        self.tolerance = tolerance
        self.add_state("h_sums", default=torch.zeros(6, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("orbital_sums", default=torch.zeros(6, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_orbital_molecules", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
               onsite: Sequence[torch.Tensor], overlaps: Sequence[torch.Tensor] | None = None,
               n_occ: Sequence[int] | None = None) -> None:
        for p, t, m in zip(predictions, targets, onsite, strict=True):
            self.h_sums += _hamiltonian_sums(p, t, m).to(self.h_sums.device)
        if overlaps is not None:
            for p, t, s, n in zip(predictions, targets, overlaps, n_occ, strict=True):
                self.orbital_sums += _orbital_sums(p, t, s, n, self.tolerance).to(self.orbital_sums.device)
                self.n_orbital_molecules += 1

    def compute(self) -> dict[str, torch.Tensor]:
        s = self.h_sums
        result = {
            "hamiltonian_mae_all": s[0] / s[3] * MICRO_HARTREE,
            "hamiltonian_mae_diagonal": s[1] / s[4] * MICRO_HARTREE,
            "hamiltonian_mae_off_diagonal": s[2] / s[5] * MICRO_HARTREE,
        }
        if self.n_orbital_molecules > 0:
            result.update({k: torch.tensor(v) for k, v in
                           _orbital_result(self.orbital_sums, self.n_orbital_molecules).items()})
        return result
