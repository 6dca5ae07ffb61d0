"""Metrics of the model families: Hamiltonian accuracy (µEh), SCF acceleration, structure RMSD (Å)."""

from zoo.metrics._hamiltonian import (
    DEGENERACY_TOLERANCE,
    MICRO_HARTREE,
    HamiltonianMetrics,
    hamiltonian_mae,
    onsite_mask,
    orbital_metrics,
    split_matrices,
)
from zoo.metrics._scf import scf_acceleration
from zoo.metrics.structure import aligned_rmsd, best_rmsd, kabsch_align, kabsch_rmsd

__all__ = [
    "DEGENERACY_TOLERANCE",
    "MICRO_HARTREE",
    "HamiltonianMetrics",
    "aligned_rmsd",
    "best_rmsd",
    "hamiltonian_mae",
    "kabsch_align",
    "kabsch_rmsd",
    "onsite_mask",
    "orbital_metrics",
    "scf_acceleration",
    "split_matrices",
]
