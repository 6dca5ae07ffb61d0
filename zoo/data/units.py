"""Unit conversions, in one place.

zoo stores positions in Å, energies in eV, forces in eV/Å and dipoles in e·Å (ASE's
conventions); quantum-chemistry matrices and orbital energies stay in Hartree. Every reader
converts on entry with the factors below, which come from :mod:`ase.units` (CODATA 2014) so that
zoo and ASE never disagree in the last digits.

Each ``X`` constant is the value of one X in zoo's unit, so ``value_in_X * X`` converts to zoo.
"""

from __future__ import annotations

from ase import units as _ase

#: 1 Hartree in eV (27.211386...).
HARTREE = _ase.Hartree
#: 1 kcal/mol in eV (0.0433641...).
KCAL_MOL = _ase.kcal / _ase.mol
#: 1 kJ/mol in eV (0.0103643...).
KJ_MOL = _ase.kJ / _ase.mol
#: 1 Bohr in Å (0.529177...).
BOHR = _ase.Bohr
#: 1 Debye in e·Å (0.2081943...).
DEBYE = _ase.Debye

#: Energy units a reader accepts, as factors to eV.
ENERGY_UNITS = {"eV": 1.0, "kcal/mol": KCAL_MOL, "kJ/mol": KJ_MOL, "hartree": HARTREE, "meV": 1e-3}
#: Length units a reader accepts, as factors to Å.
LENGTH_UNITS = {"angstrom": 1.0, "bohr": BOHR}

_ALIASES = {"ev": "eV", "mev": "meV", "kcal/mol": "kcal/mol", "kj/mol": "kJ/mol", "hartree": "hartree",
            "ha": "hartree", "eh": "hartree", "angstrom": "angstrom", "å": "angstrom", "a": "angstrom",
            "ang": "angstrom", "bohr": "bohr", "a0": "bohr"}


def _lookup(unit: str, table: dict[str, float], what: str) -> float:
    name = _ALIASES.get(str(unit).strip().lower())
    if name not in table:
        raise ValueError(f"unknown {what} unit {unit!r}; expected one of {sorted(table)}")
    return table[name]


def energy_to_ev(unit: str) -> float:
    """Factor converting energies in ``unit`` (e.g. ``"kcal/mol"``, ``"hartree"``) to eV.

    Example:
        >>> round(energy_to_ev("kcal/mol"), 7)
        0.0433641
    """
    return _lookup(unit, ENERGY_UNITS, "energy")


def length_to_angstrom(unit: str) -> float:
    """Factor converting lengths in ``unit`` (``"angstrom"`` or ``"bohr"``) to Å."""
    return _lookup(unit, LENGTH_UNITS, "length")
