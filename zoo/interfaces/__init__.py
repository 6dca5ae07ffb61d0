"""Bridges to other codes: the ASE calculator of every zoo model with a potential energy, and a
Hamiltonian model's density as PySCF's initial guess (:func:`model_guess`).

:class:`ZooCalculator` is defined in :mod:`zoo.models._inference`, beside ``as_calculator()`` that
builds it, so that the models import nothing above them; this is its public name.
"""

from zoo.interfaces.pyscf import model_guess
from zoo.models._inference import ZooCalculator

__all__ = ["ZooCalculator", "model_guess"]
