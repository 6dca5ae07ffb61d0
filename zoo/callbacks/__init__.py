"""Callbacks shared by every family.

``EMA`` keeps an exponential moving average of the weights, used for validation and for the
final model; it is Lightning's own ``EMAWeightAveraging`` (decay, update interval and start step
are its arguments), re-exported so that recipes find every callback under ``zoo.callbacks``.
"""

from lightning.pytorch.callbacks import EMAWeightAveraging as EMA

__all__ = ["EMA"]
