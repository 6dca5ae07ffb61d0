"""Outputs and loss functions live in :mod:`zoo.losses`; this module keeps the path that
``zoo.callbacks._hessian`` imports ``LOSSES`` from."""

from zoo.losses import LOSSES

__all__ = ["LOSSES"]
