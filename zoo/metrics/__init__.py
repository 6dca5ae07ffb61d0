"""Metrics of the model families: Hamiltonian accuracy (µEh) and SCF acceleration."""

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

__all__ = [
    "DEGENERACY_TOLERANCE",
    "MICRO_HARTREE",
    "HamiltonianMetrics",
    "hamiltonian_mae",
    "onsite_mask",
    "orbital_metrics",
    "scf_acceleration",
    "split_matrices",
]
