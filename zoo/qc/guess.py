"""A Hamiltonian as an SCF initial guess, and the SCF cycles it saves.

A Hamiltonian model pays off in DFT when its H, turned into a density matrix, starts PySCF's
SCF close to convergence. Matrices here are in PySCF AO order (see :mod:`zoo.qc.ao`). The guess
of a zoo model by name is :func:`zoo.interfaces.model_guess`, above the registry that loads it.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from zoo.qc.eigh import density_matrix, generalized_eigh
from zoo.qc.level import LevelOfTheory


def density_from_hamiltonian(hamiltonian, overlap, n_electrons: int, lindep: float | None = None):
    """Closed-shell density ``D = 2 C_occ C_occ^T`` of the lowest orbitals of ``H C = S C ε``.

    NumPy in, NumPy out (ready for ``mf.kernel(dm0=D)``); torch in, torch out (differentiable).
    ``lindep`` drops the eigen-directions of S below it (see :func:`zoo.qc.eigh.orthogonalizer`).
    """
    n_electrons = int(n_electrons)
    if n_electrons % 2:
        raise ValueError(f"{n_electrons} electrons: a closed-shell density needs an even number")
    n_occ = n_electrons // 2
    if isinstance(hamiltonian, torch.Tensor):
        overlap = torch.as_tensor(overlap, dtype=hamiltonian.dtype, device=hamiltonian.device)
        return density_matrix(generalized_eigh(hamiltonian, overlap, lindep=lindep)[1], n_occ)
    coefficients = generalized_eigh(torch.as_tensor(np.asarray(hamiltonian, dtype=np.float64)),
                                    torch.as_tensor(np.asarray(overlap, dtype=np.float64)), lindep=lindep)[1]
    return density_matrix(coefficients, n_occ).numpy()


#: Base Hamiltonians a model can learn a correction to (``HamiltonianModel(base=...)``).
BASES = ("minao_fock",)


def base_hamiltonian(kind: str, atomic_numbers, positions_angstrom, level: LevelOfTheory) -> np.ndarray:
    """A cheap physical Hamiltonian at ``level``, in PySCF AO order (Hartree).

    ``"minao_fock"``: the Fock matrix of PySCF's MINAO guess density (superposed atomic
    densities), ``F[D_MINAO]``: one Fock build, about a tenth of an SCF. It already holds the
    large core and on-site terms exactly, so a model that adds a learned correction to it only
    has to learn how bonding changes the density (about 4,700 µEh MAE on drug-like molecules,
    against tens of Hartree for H itself).
    """
    return base_hamiltonian_of(kind, level.build_scf(level.build_mole(atomic_numbers, positions_angstrom)))


def base_hamiltonian_of(kind: str, mf, grid_level: int | None = None) -> np.ndarray:
    """:func:`base_hamiltonian` on a given PySCF SCF object (which keeps the grids and integrals it builds).

    ``grid_level``: evaluate the XC part on a PySCF grid of this level where ``mf``'s is finer
    (the two-electron integrals stay ``mf``'s, built once). On 12 QM9 molecules of 8–9 heavy
    atoms, level 1 instead of 3 changes F[D_MINAO] by 1.0 µEh on average (at most 0.11 mEh), far
    below a model's error, and a model's guess from it needs the same SCF cycles to the same
    energy, 1.3 s sooner (``benchmarks/hamiltonian/results/guess_cost.json``).
    """
    if kind not in BASES:
        raise ValueError(f"unknown base Hamiltonian {kind!r}; choose one of {BASES}")
    density = mf.get_init_guess(key="minao")
    grids = getattr(mf, "grids", None)
    if grid_level is None or grids is None or grid_level >= grids.level:
        return np.asarray(mf.get_fock(dm=density))
    from pyscf.dft.gen_grid import Grids

    # mf itself on a coarse grid for this one build: its integrals (in core, or the direct-SCF
    # screening) are made once, for the SCF too; its own grid is put back unbuilt
    coarse = Grids(mf.mol)
    coarse.level = int(grid_level)
    mf.grids = coarse
    try:
        return np.asarray(mf.get_fock(dm=density))
    finally:
        mf.grids = grids


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
