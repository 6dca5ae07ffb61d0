"""LightningModules: one task per family, all built on :class:`AtomisticTask`.

:class:`~zoo.losses.Output`, :data:`~zoo.losses.LOSSES` and :data:`~zoo.losses.METRICS` are those of
:mod:`zoo.losses`, importable from here as well (recipes and scripts name ``zoo.tasks.Output``).
:class:`AnnealOverBudget` is the learning-rate schedule over a run's budget (epochs or wall clock,
:func:`budget_fraction`).
"""

from zoo.losses import LOSSES, METRICS, Output
from zoo.tasks._base import AtomisticTask
from zoo.tasks._budget import AnnealOverBudget, budget_fraction
from zoo.tasks.consistency import ConsistencyTask
from zoo.tasks.force_field import ForceFieldTask
from zoo.tasks.hamiltonian import HamiltonianTask

__all__ = ["AnnealOverBudget", "budget_fraction", "AtomisticTask", "ConsistencyTask", "ForceFieldTask", "HamiltonianTask", "Output", "LOSSES", "METRICS"]
