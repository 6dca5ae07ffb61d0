"""The training budget: how much of a run is spent, and a learning rate annealed over it.

A run ends at whichever of its limits comes first (``max_epochs``/``max_steps`` or ``max_time``), so
the fraction spent is the larger of the fraction of optimizer steps taken and the fraction of wall
clock used. Schedules that follow the fraction (DeNS's loss weight, :class:`AnnealOverBudget`) end
where the run ends, also when the clock decides. Budgeted training (Li, Yumer and Ramanan, ICLR
2020) finds a learning rate decayed linearly to zero over the budget the best schedule for a fixed
budget; a plateau schedule with a patience of epochs may never decay inside a short one.
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch.callbacks import Timer
from torch.optim.lr_scheduler import LRScheduler

SHAPES = ("linear", "cosine")


def budget_fraction(trainer) -> float:
    """The fraction (0 to 1) of ``trainer``'s run spent so far: the larger of its optimizer steps
    over the steps its epoch or step limit allows and its training time over ``max_time``; 0 for a
    run with no limit."""
    fractions = [0.0]
    total = trainer.estimated_stepping_batches
    if total and total != float("inf"):
        fractions.append(trainer.global_step / total)
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = timer.time_remaining("train") if timer is not None else None
    if remaining is not None:
        elapsed = timer.time_elapsed("train")
        fractions.append(elapsed / (elapsed + remaining) if elapsed + remaining > 0 else 1.0)
    return min(max(fractions), 1.0)


class AnnealOverBudget(LRScheduler):
    """Learning rates annealed from their initial values to ``final_factor`` times them over the
    run's budget (:func:`budget_fraction`), after an optional linear warm-up.

    A task that trains with it (``lr_scheduler`` of any :class:`~zoo.tasks.AtomisticTask`) sets its
    fraction before every training step, so the decay follows wall clock when ``max_time`` ends the
    run and epochs when ``max_epochs`` does. The fraction is saved in checkpoints: a resumed run
    continues the schedule (give the resumed fit the whole run's ``max_time``).

    Example::

        lr_scheduler:
          class_path: zoo.tasks.AnnealOverBudget
          init_args: {shape: linear, final_factor: 0.0}

    Args:
        optimizer: the optimizer whose learning rates it sets.
        shape: ``"linear"`` or ``"cosine"`` decay.
        final_factor: the learning rate at the end of the budget, as a fraction of the initial one.
        warmup: the fraction of the budget over which the rate rises linearly from 0.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, shape: str = "linear", final_factor: float = 0.0,
                 warmup: float = 0.0, last_epoch: int = -1):
        if shape not in SHAPES:
            raise ValueError(f"unknown annealing shape {shape!r}; choose one of {SHAPES}")
        if not 0.0 <= final_factor <= 1.0:
            raise ValueError(f"final_factor must be in [0, 1], got {final_factor}")
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup must be a fraction of the budget in [0, 1), got {warmup}")
        self.shape, self.final_factor, self.warmup = shape, float(final_factor), float(warmup)
        self.fraction = 0.0
        super().__init__(optimizer, last_epoch)

    def factor(self, fraction: float) -> float:
        """The learning rate at ``fraction`` of the budget, relative to the initial one."""
        fraction = min(max(fraction, 0.0), 1.0)
        if fraction < self.warmup:
            return fraction / self.warmup
        progress = (fraction - self.warmup) / (1.0 - self.warmup)
        decay = 1.0 - progress if self.shape == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_factor + (1.0 - self.final_factor) * decay

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.fraction) for base in self.base_lrs]

    def set_fraction(self, fraction: float) -> None:
        """Move the schedule to ``fraction`` of the budget and set the optimizer's learning rates."""
        self.fraction = float(fraction)
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr
