"""Losses, between the models and the tasks: what a task trains is a list of :class:`Output` (a
prediction, its labels where they exist, loss, weight and metrics) plus a list of
:class:`AuxiliaryLoss` (terms that are no output of the model), summed the same way by every task.

- :class:`Output`, :data:`LOSSES`, :data:`METRICS`: the masked loss and metric layer; every
  output reads only the rows its label mask (:func:`label_mask`) marks as labelled;
- :func:`masked_loss`: a loss over masked rows that keeps the graph when there are none;
- :class:`AuxiliaryLoss` with :class:`Step`, :class:`Forward` and :class:`Progress`: the interface
  of DeNS (:class:`zoo.dens.DeNS`), self-consistency training (:class:`SelfConsistencyLoss`), the
  occupied-space loss of Hamiltonians (:class:`OccupiedSpaceLoss`) and the physical-consistency losses (:class:`DiffusionDenoisingLoss`, :class:`OptimalityLoss`,
  :class:`ScoreConsistencyLoss`).
"""

from zoo.losses._auxiliary import AuxiliaryLoss, Forward, Progress, Step
from zoo.losses._consistency import (
    EQUILIBRIUM_KINDS,
    DiffusionDenoisingLoss,
    OptimalityLoss,
    ScoreConsistencyLoss,
    optimality_loss,
    score_consistency_loss,
    score_target,
)
from zoo.losses._functions import LOSSES, METRICS, check_loss_name
from zoo.losses._masks import label_mask, masked_loss
from zoo.losses._occupied import OccupiedSpaceLoss, occupied_space_loss
from zoo.losses._output import Output, energy_force_outputs
from zoo.losses._sct import SelfConsistencyLoss

__all__ = [
    "AuxiliaryLoss", "DiffusionDenoisingLoss", "EQUILIBRIUM_KINDS", "Forward", "LOSSES", "METRICS",
    "OccupiedSpaceLoss", "OptimalityLoss", "Output", "Progress", "ScoreConsistencyLoss", "SelfConsistencyLoss", "Step",
    "check_loss_name", "energy_force_outputs", "label_mask", "masked_loss", "occupied_space_loss", "optimality_loss", "score_consistency_loss",
    "score_target",
]
