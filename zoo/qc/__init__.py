"""Quantum chemistry with PySCF: level of theory, AO conventions, Fock builder, eigensolver, SCF guess.

The physics at the bottom of zoo: the data layer, the models and the registry build on it, and
it imports none of them (a model's guess by name is :func:`zoo.interfaces.model_guess`); making datasets with it is :mod:`zoo.datagen`. PySCF is imported lazily inside
functions, so importing :mod:`zoo.qc` stays cheap.
"""

from zoo.qc.level import LevelOfTheory, pyscf_version

__all__ = ["LevelOfTheory", "pyscf_version"]
