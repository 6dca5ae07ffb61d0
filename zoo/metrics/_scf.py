"""SCF acceleration: PySCF cycles and wall time from a predicted density versus its MINAO guess."""

from __future__ import annotations

from zoo.qc.guess import scf_cycles
from zoo.qc.level import LevelOfTheory


def scf_acceleration(molecule, level: LevelOfTheory, density) -> dict:
    """Run the SCF of ``molecule`` twice at ``level``: from PySCF's MINAO guess and from ``density``.

    Args:
        molecule: a built :class:`pyscf.gto.Mole`, or ``(atomic_numbers, positions_angstrom)``.
        level: the level of theory of the SCF (the model's).
        density: the initial density matrix, PySCF AO order (e.g. ``model.predict(atoms)["density_matrix"]``).

    Returns:
        ``{"cycles_guess", "cycles_minao", "cycle_ratio", "time_guess_s", "time_minao_s",
        "converged", "energy_difference"}``: ``cycle_ratio`` is guess/MINAO (below 1 is a
        speed-up); both runs must converge to the same energy (``energy_difference``, Hartree).
    """
    from pyscf import gto

    mol = molecule if isinstance(molecule, gto.Mole) else level.build_mole(*molecule)
    minao = scf_cycles(mol, level)
    guess = scf_cycles(mol, level, dm0=density)
    return {
        "cycles_guess": guess["cycles"],
        "cycles_minao": minao["cycles"],
        "cycle_ratio": guess["cycles"] / max(minao["cycles"], 1),
        "time_guess_s": guess["time_s"],
        "time_minao_s": minao["time_s"],
        "converged": guess["converged"] and minao["converged"],
        "energy_difference": guess["energy"] - minao["energy"],
    }
