"""The work of one structure in :func:`zoo.datagen.labelling.label`: its PySCF labels, run by a worker.

Kept apart from :mod:`zoo.datagen.labelling`, which writes files through the data layer (and so
imports torch), so that a Dask worker starts with PySCF, ASE and numpy alone.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
from ase.units import Bohr as BOHR
from ase.units import Hartree as HARTREE  # zoo.data.units' constants are ASE's: the same values

from zoo.qc.level import LevelOfTheory


class SCFNotConverged(RuntimeError):
    """The SCF stopped before convergence; ``cycles`` is the number of iterations it ran."""

    def __init__(self, message: str, cycles: int):
        super().__init__(message)
        self.cycles = cycles

    def __reduce__(self):  # picklable with its cycles, as an exception crossing from a worker must be
        return type(self), (str(self), self.cycles)


def compute_labels(atoms, level: LevelOfTheory, properties: Sequence[str],
                   max_cycle: int = 100, conv_tol: float = 1e-10, guess: np.ndarray | None = None) -> dict:
    """PySCF labels of one structure, in zoo's units.

    ``guess`` is an initial density matrix (PySCF AO order), e.g. the converged one of the
    previous frame of an MD trajectory: fewer SCF cycles, the same converged result. One of
    the wrong shape is ignored (PySCF's default guess is used).

    Returns:
        A dict with the requested ``properties``: ``energy`` (eV), ``forces`` (eV/Å, minus the
        analytic gradient, with the grid response for DFT), ``dipole`` (e·Å), ``fock``, ``overlap``, ``density_matrix``
        ([n_ao, n_ao], Hartree, the Fock matrix built on the converged density) and
        ``orbital_energies`` ([n_ao], Hartree); plus ``cycles``, the SCF iterations, and
        ``converged_density``, the density matrix (a guess for the next structure).

    Raises:
        SCFNotConverged: the SCF did not converge within ``max_cycle`` iterations.
        ValueError: the structure cannot be built (see :meth:`LevelOfTheory.build_mole`).
    """
    mol = level.build_mole(atoms.numbers, atoms.positions)
    mf = level.build_scf(mol, conv_tol=conv_tol, max_cycle=max_cycle)
    if guess is not None and np.shape(guess) != (mol.nao, mol.nao):
        guess = None
    mf.kernel(dm0=guess)
    cycles = int(getattr(mf, "cycles", -1))
    if not mf.converged:
        raise SCFNotConverged(f"SCF not converged in {max_cycle} cycles (E = {mf.e_tot:.8f} Eh)", cycles)
    result = {"cycles": cycles}
    if "energy" in properties:
        result["energy"] = float(mf.e_tot) * HARTREE
    if "forces" in properties:
        gradient = mf.nuc_grad_method()
        if hasattr(gradient, "grid_response"):
            # the exact derivative of the DFT energy (the grid moves with the atoms): a conservative
            # force field cannot fit forces that are not -dE/dR (off by ~3 meV/Å for ethanol)
            gradient.grid_response = True
        result["forces"] = -gradient.kernel() * (HARTREE / BOHR)
    if "dipole" in properties:
        result["dipole"] = np.asarray(mf.dip_moment(unit="AU", verbose=0)) * BOHR
    density = mf.make_rdm1()
    result["converged_density"] = density
    if "fock" in properties:
        # rebuilt on the final density without DIIS/damping: exactly H[D], the SCT target
        result["fock"] = mf.get_fock(dm=density)
    if "overlap" in properties:
        result["overlap"] = mf.get_ovlp()
    if "density_matrix" in properties:
        result["density_matrix"] = density
    if "orbital_energies" in properties:
        result["orbital_energies"] = np.asarray(mf.mo_energy)
    return result


def label_structure(atoms, level: LevelOfTheory, properties: Sequence[str], max_cycle: int, conv_tol: float,
                    run: str | None) -> dict:
    """The task of one structure, run by a worker: ``{"result": labels}`` or ``{"failure": why, "cycles": n}``.

    An SCF that does not converge and a structure PySCF cannot build (overlapping atoms, a
    singular overlap matrix) are answers, returned rather than raised: rerunning them elsewhere
    would fail the same way. With ``run`` set, the SCF starts from the density this worker
    thread converged last in the same run, if that structure had the same atoms.
    """
    guess = _last_density.guess(run, atoms.numbers) if run is not None else None
    try:
        result = compute_labels(atoms, level, properties, max_cycle=max_cycle, conv_tol=conv_tol, guess=guess)
    except SCFNotConverged as error:
        return {"failure": str(error), "cycles": error.cycles}
    except (ValueError, np.linalg.LinAlgError) as error:
        return {"failure": f"{type(error).__name__}: {error}", "cycles": 0}
    density = result.pop("converged_density")
    if run is not None:
        _last_density.keep(run, atoms.numbers, density)
    return {"result": result}


class _LastDensity(threading.local):
    """The converged density of the structure a worker thread labelled last, as the next SCF's guess."""

    def __init__(self):
        self.run, self.numbers, self.density = None, None, None

    def guess(self, run: str, numbers) -> np.ndarray | None:
        same = self.run == run and self.numbers is not None and np.array_equal(self.numbers, numbers)
        return self.density if same else None

    def keep(self, run: str, numbers, density) -> None:
        self.run, self.numbers, self.density = run, np.array(numbers), density


_last_density = _LastDensity()
