"""Exponential moving average of the weights, with the warm-up of torch-ema (and MACE)."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging


def warmup_ema_avg_fn(decay: float):
    r"""The average update of :class:`torch.optim.swa_utils.AveragedModel` with a warm-up:
    after ``n`` updates the decay is :math:`\min(\text{decay}, (1 + n) / (10 + n))`.

    A fixed decay keeps the random initial weights in the average for long: with 0.99 they are
    still 30 % of it after the 119 steps of an epoch of 950 structures, so early validation
    and short runs measure a model that is partly untrained.

    Example:
        >>> update = warmup_ema_avg_fn(0.99)
        >>> round(float(update(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(1))), 4)  # decay 2/11
        0.8182
    """

    def update(averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor) -> torch.Tensor:
        n = float(n_averaged)
        rate = min(decay, (1.0 + n) / (10.0 + n))
        return rate * averaged + (1.0 - rate) * current

    return update


class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging`` (its arguments: decay, update interval, start step), whose
    decay warms up as :func:`warmup_ema_avg_fn` says unless ``warmup=False``.

    The average is used for validation, saved in checkpoints and becomes the final model.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True, **kwargs):
        super().__init__(decay=decay, **kwargs)
        self.warmup = warmup
        if warmup:  # EMAWeightAveraging passes its own avg_fn to AveragedModel through these kwargs
            self._kwargs["avg_fn"] = warmup_ema_avg_fn(decay)
