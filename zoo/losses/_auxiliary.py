"""Auxiliary losses: loss terms that are no output of the model (DeNS, self-consistency, the
physical-consistency losses), behind one interface that every task sums the same way."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from zoo.data import Statistics


@dataclass(frozen=True)
class Progress:
    """How far training is, for losses scheduled by epoch, step or fraction of the run.

    Attributes:
        epoch: the current epoch (from 0).
        step: optimizer steps taken so far.
        fraction: the fraction of the run's budget spent, optimizer steps or wall clock, whichever
            ends the run (:func:`zoo.tasks.budget_fraction`; 0 outside a fit, or when the run has
            no limit).
    """

    epoch: int = 0
    step: int = 0
    fraction: float = 0.0


@dataclass
class Forward:
    """The predictions of one forward pass, which the outputs and auxiliary losses of a step read.

    Attributes:
        predictions: ``{name: tensor}`` as the model returns them.
        atoms: [n_atoms] bool: the atoms whose per-atom labels the outputs train on (``None``: all).
        structures: [n_structures] bool: the structures whose per-structure labels (energy, ...)
            the outputs train on (``None``: all).
    """

    predictions: dict[str, torch.Tensor]
    atoms: torch.Tensor | None = None
    structures: torch.Tensor | None = None


def _no_log(name: str, value, batch_size: int | None = None) -> None:
    """The default of :attr:`Step.log` outside a task."""


@dataclass
class Step:
    """What an auxiliary loss reads in one step of a task.

    Attributes:
        model: the task's model.
        batch: the batch of this step.
        forward: the predictions the outputs are trained on (:class:`Forward`).
        stage: ``"train"``, ``"val"`` or ``"test"``.
        progress: where training is.
        batch_idx: the batch's number in its epoch (evaluation seeds fixed noise with it).
        log: ``log(name, value, batch_size=None)``, the task's ``self.log``, for values a loss
            reports besides itself (the optimality loss's energy gap).
    """

    model: torch.nn.Module
    batch: Any
    forward: Forward
    stage: str
    progress: Progress = Progress()
    batch_idx: int = 0
    log: Callable[..., None] = _no_log

    @property
    def predictions(self) -> dict[str, torch.Tensor]:
        return self.forward.predictions


class AuxiliaryLoss(torch.nn.Module, metaclass=abc.ABCMeta):
    """A loss term that is no output of the model; a task adds ``weight(progress) * loss(step)``
    to its total and logs the loss as ``{stage}/{name}_loss``.

    A subclass sets :attr:`name` and :attr:`stages` and implements :meth:`forward`; it may also

    - schedule itself: :meth:`weight` (by default the constant ``weight``), :meth:`active` (by
      default from ``start_epoch`` on);
    - make the forward pass of training steps itself (:meth:`predict`, DeNS's corrupted
      structures), which the outputs then train on;
    - take the training set's statistics (:meth:`set_statistics`).

    A task registers each of its auxiliary losses under its :attr:`name` (so ``task.dens``), and
    any tensors a loss holds are saved with the task under that name.

    Args:
        weight: the loss's weight in the task's total.
        start_epoch: the first epoch in which the loss is computed.

    Example:
        >>> class PositionsNorm(AuxiliaryLoss):  # pulls atoms towards the origin
        ...     name = "positions_norm"
        ...     def forward(self, step):
        ...         return step.batch["pos"].square().mean()
        >>> loss = PositionsNorm(weight=0.1)
        >>> step = Step(model=torch.nn.Identity(), batch={"pos": torch.ones(2, 3)}, forward=Forward({}), stage="train")
        >>> loss.active(step), loss.weight(step.progress), loss(step).item()
        (True, 0.1, 1.0)
    """

    #: Log and attribute name; unique among a task's auxiliary losses and attributes.
    name: ClassVar[str]
    #: The stages in which the loss is computed (training only, unless a subclass says otherwise).
    stages: ClassVar[tuple[str, ...]] = ("train",)

    def __init__(self, weight: float = 1.0, start_epoch: int = 0):
        super().__init__()
        if not weight >= 0:
            raise ValueError(f"the weight of the {self.name} loss must be >= 0, got {weight}")
        self.loss_weight = float(weight)
        self.start_epoch = int(start_epoch)

    def weight(self, progress: Progress) -> float:
        """The loss's weight at ``progress``."""
        return self.loss_weight

    def active(self, step: Step) -> bool:
        """Whether the loss is computed in ``step`` (one of its :attr:`stages`)."""
        return step.progress.epoch >= self.start_epoch

    def predict(self, model: torch.nn.Module, batch) -> Forward | None:
        """The forward pass of a training step, or ``None`` (the default): the model's on the batch."""
        return None

    def set_statistics(self, statistics: Statistics) -> None:
        """Take what the loss needs from the training set's statistics (nothing, by default)."""

    @abc.abstractmethod
    def forward(self, step: Step) -> torch.Tensor | None:
        """The loss in ``step``, or ``None`` when the batch has nothing it applies to."""
