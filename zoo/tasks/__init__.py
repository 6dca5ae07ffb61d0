"""LightningModules: one task per family, all built on :class:`AtomisticTask`."""

from zoo.tasks._base import AtomisticTask
from zoo.tasks._outputs import LOSSES, METRICS, Output
from zoo.tasks.consistency import ConsistencyTask
from zoo.tasks.force_field import ForceFieldTask
from zoo.tasks.hamiltonian import HamiltonianTask

__all__ = ["AtomisticTask", "ConsistencyTask", "ForceFieldTask", "HamiltonianTask", "Output", "LOSSES", "METRICS"]
