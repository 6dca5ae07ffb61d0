"""Quantum chemistry with PySCF: level of theory, AO conventions, Fock builder, eigensolver, SCF guess.

PySCF is imported lazily inside functions, so importing :mod:`zoo.qc` stays cheap.
"""

from zoo.qc.level import LevelOfTheory, pyscf_version

__all__ = ["LevelOfTheory", "pyscf_version"]
