"""A predicted Hamiltonian as an SCF initial guess, and the SCF cycles it saves.

A Hamiltonian model pays off in DFT when its H, turned into a density matrix, starts PySCF's
SCF close to convergence. Matrices here are in PySCF AO order (see :mod:`zoo.qc.ao`).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from zoo.qc.eigh import density_matrix, generalized_eigh
from zoo.qc.level import LevelOfTheory


def density_from_hamiltonian(hamiltonian, overlap, n_electrons: int):
    """Closed-shell density ``D = 2 C_occ C_occ^T`` of the lowest orbitals of ``H C = S C ε``.

    NumPy in, NumPy out (ready for ``mf.kernel(dm0=D)``); torch in, torch out (differentiable).
    """
    n_electrons = int(n_electrons)
    if n_electrons % 2:
        raise ValueError(f"{n_electrons} electrons: a closed-shell density needs an even number")
    n_occ = n_electrons // 2
    if isinstance(hamiltonian, torch.Tensor):
        overlap = torch.as_tensor(overlap, dtype=hamiltonian.dtype, device=hamiltonian.device)
        return density_matrix(generalized_eigh(hamiltonian, overlap)[1], n_occ)
    import scipy.linalg

    _, coefficients = scipy.linalg.eigh(np.asarray(hamiltonian), np.asarray(overlap))
    occupied = coefficients[:, :n_occ]
    return 2.0 * occupied @ occupied.T


def scf_cycles(mol, level: LevelOfTheory, dm0=None) -> dict:
    """Run the SCF of ``mol`` at ``level`` from ``dm0`` (default: PySCF's MINAO guess).

    Returns:
        ``{"cycles", "time_s", "converged", "energy"}``: SCF iterations PySCF ran, wall time of
        the SCF (grids and integrals included), whether it converged, and the energy (Hartree).
    """
    mf = level.build_scf(mol)
    start = time.perf_counter()
    energy = mf.kernel(dm0=None if dm0 is None else np.asarray(dm0, dtype=np.float64))
    return {
        "cycles": int(mf.cycles),
        "time_s": time.perf_counter() - start,
        "converged": bool(mf.converged),
        "energy": float(energy),
    }
