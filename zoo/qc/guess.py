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


def base_hamiltonian_of(kind: str, mf) -> np.ndarray:
    """:func:`base_hamiltonian` on a given PySCF SCF object (which keeps the grids it builds)."""
    if kind not in BASES:
        raise ValueError(f"unknown base Hamiltonian {kind!r}; choose one of {BASES}")
    return np.asarray(mf.get_fock(dm=mf.get_init_guess(key="minao")))


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


def model_guess(model, mf, lindep: float | None = None) -> np.ndarray:
    """The density matrix a Hamiltonian model predicts for ``mf``'s molecule: a ``dm0`` for PySCF.

    ::

        mf = dft.RKS(mol, xc="b3lyp5")
        mf.kernel(dm0=model_guess("hamiltonian-water-b3lyp5-def2svp-v2", mf))

    Args:
        model: a registry name or folder (loaded with :func:`zoo.load`), a Hamiltonian task, or a
            :class:`~zoo.models.HamiltonianModel`.
        mf: a PySCF RKS/RHF object (or a built ``Mole``, which skips the functional check).
        lindep: see :meth:`~zoo.models.HamiltonianModel.predict`.

    Raises:
        ValueError: the molecule's basis, functional or charge differs from the model's level of
            theory (the guess would be for another Hamiltonian), or an element the model lacks.
    """
    if isinstance(model, str):
        import zoo

        model = zoo.load(model)
    model = getattr(model, "model", model)
    if not hasattr(model, "level") or not hasattr(model, "predict"):
        raise TypeError(f"{type(model).__name__} is not a Hamiltonian model (it needs .level and .predict)")
    level = model.level
    mol = getattr(mf, "mol", mf)
    problems = []
    if not isinstance(mol.basis, str) or mol.basis.lower() != level.basis:
        problems.append(f"basis {mol.basis!r} (model: {level.basis!r})")
    if mf is not mol:
        xc = getattr(mf, "xc", None)
        xc = xc.lower() if isinstance(xc, str) else None
        if xc != level.xc:
            problems.append(f"functional {xc!r} (model: {level.xc!r})")
    if mol.charge != level.charge or mol.spin != level.spin:
        problems.append(f"charge {mol.charge}, spin {mol.spin} (model: {level.charge}, {level.spin})")
    if problems:
        raise ValueError(f"the SCF differs from the model's level of theory ({level.describe()}): "
                         f"{'; '.join(problems)}. Run the SCF at the model's level, or use a model trained at yours "
                         "(zoo list)")
    base = None
    if getattr(model, "base", None) is not None and mf is not mol:
        # the base on the user's own SCF object: its grids and integrals are then built once, for both
        base = base_hamiltonian_of(model.base, mf)
    return model.predict((mol.atom_charges(), mol.atom_coords(unit="Angstrom")), lindep=lindep, base=base)["density_matrix"]
