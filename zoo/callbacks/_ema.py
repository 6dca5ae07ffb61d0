"""Exponential moving average of the weights, with the warm-up of torch-ema (and MACE)."""

from __future__ import annotations

import torch
from lightning.pytorch.callbacks import EMAWeightAveraging


def warmup_ema_avg_fn(decay: float, warmup: bool = True):
    r"""The average update of :class:`torch.optim.swa_utils.AveragedModel` with a warm-up:
    after ``n`` updates the decay is :math:`\min(\text{decay}, (1 + n) / (10 + n))` (``decay``
    throughout with ``warmup=False``).

    A fixed decay keeps the random initial weights in the average for long: with 0.99 they are
    still 30 % of it after the 119 steps of an epoch of 950 structures, so early validation
    and short runs measure a model that is partly untrained.

    Integer and boolean tensors (lookup tables such as the element index of atomic numbers,
    counters) are not averaged but taken as they are: their average, truncated back to integers,
    drifts (0.99 * 3 + 0.01 * 3 is 2 in int64) and would map elements to the wrong index.

    Example:
        >>> update = warmup_ema_avg_fn(0.99)
        >>> round(float(update(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(1))), 4)  # decay 2/11
        0.8182
        >>> update(torch.tensor([3]), torch.tensor([3]), torch.tensor(100))  # an index stays exact
        tensor([3])
    """

    def update(averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor) -> torch.Tensor:
        if not averaged.is_floating_point():
            return current
        n = float(n_averaged)
        rate = min(decay, (1.0 + n) / (10.0 + n)) if warmup else decay
        return rate * averaged + (1.0 - rate) * current

    return update


class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging`` (its arguments: decay, update interval, start step), whose
    decay warms up as :func:`warmup_ema_avg_fn` says unless ``warmup=False``, and whose integer
    buffers are kept exact instead of averaged.

    The average is used for validation, saved in checkpoints and becomes the final model.
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True, **kwargs):
        super().__init__(decay=decay, **kwargs)
        self.warmup = warmup
        # EMAWeightAveraging passes its own avg_fn to AveragedModel through these kwargs; torch's
        # averages integer buffers too (see warmup_ema_avg_fn)
        self._kwargs["avg_fn"] = warmup_ema_avg_fn(decay, warmup)
