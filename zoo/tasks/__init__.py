"""LightningModules: one task per family, all built on :class:`AtomisticTask`."""

from zoo.tasks._base import AtomisticTask
from zoo.tasks._outputs import LOSSES, METRICS, Output

__all__ = ["AtomisticTask", "Output", "LOSSES", "METRICS"]
