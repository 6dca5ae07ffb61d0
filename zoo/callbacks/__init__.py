"""Callbacks shared by every family.

``EMA`` keeps an exponential moving average of the weights, used for validation, saved in
checkpoints and used for the final model: Lightning's own ``EMAWeightAveraging`` (decay, update
interval and start step are its arguments) with torch-ema's warm-up of the decay. ``EpochSummary`` prints one line of progress and metrics per
epoch. ``ExportPretrained`` writes a tested model for the registry. ``HessianSpectrum`` measures
the loss curvature of each output (top eigenvalues, trace, density). ``TrainingTime`` logs the
seconds spent in training steps, for learning curves against cost.
"""

from zoo.callbacks._ema import EMA, warmup_ema_avg_fn
from zoo.callbacks._export import ExportPretrained
from zoo.callbacks._freeze import FreezeBackbone
from zoo.callbacks._hessian import HessianSpectrum
from zoo.callbacks._progress import EpochSummary
from zoo.callbacks._training_time import TrainingTime

__all__ = ["EMA", "warmup_ema_avg_fn", "EpochSummary", "ExportPretrained", "FreezeBackbone", "HessianSpectrum", "TrainingTime"]
