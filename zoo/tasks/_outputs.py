"""What a task trains: a list of outputs, each with its loss, weight and metrics (SchNetPack 2 style)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torchmetrics

from zoo.data import keys

#: Losses an output may name; each maps (prediction, target) to a scalar.
LOSSES = {
    "mse": torch.nn.functional.mse_loss,
    "mae": torch.nn.functional.l1_loss,
    "huber": torch.nn.functional.huber_loss,
    "smooth_l1": torch.nn.functional.smooth_l1_loss,
    # QHNet's Hamiltonian loss: MAE for the many small entries, MSE against the few large errors
    "mae_mse": lambda p, t: torch.nn.functional.l1_loss(p, t) + torch.nn.functional.mse_loss(p, t),
}

#: Metrics an output may name, as torchmetrics classes (they sync across DDP ranks).
METRICS = {
    "mae": lambda: torchmetrics.MeanAbsoluteError(),
    "rmse": lambda: torchmetrics.MeanSquaredError(squared=False),
    "mse": lambda: torchmetrics.MeanSquaredError(),
    "max_ae": lambda: torchmetrics.MaxMetric(),
}


@dataclass
class Output:
    """One predicted quantity of a task.

    Args:
        name: key of the prediction in the model's output dict.
        target: key of the label in the batch (defaults to ``name``).
        loss: one of :data:`LOSSES`.
        weight: weight of this output's loss in the total loss.
        scale: the loss compares ``(prediction - target) / scale``; a typical spread of the
            target (e.g. its standard deviation) makes weights comparable across units.
        metrics: names from :data:`METRICS`, computed in the target's own units.
    """

    name: str
    target: str | None = None
    loss: str = "mse"
    weight: float = 1.0
    scale: float = 1.0
    metrics: list[str] = field(default_factory=lambda: ["mae", "rmse"])

    def __post_init__(self):
        self.target = self.target or self.name
        if self.loss not in LOSSES:
            raise ValueError(f"output {self.name!r}: unknown loss {self.loss!r}; choose one of {sorted(LOSSES)}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"output {self.name!r}: unknown metrics {unknown}; choose from {sorted(METRICS)}")
        if self.weight < 0 or not self.scale > 0:
            raise ValueError(f"output {self.name!r}: weight must be >= 0 and scale > 0")

    def compute_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return LOSSES[self.loss](prediction / self.scale, target / self.scale)

    def make_metrics(self) -> torchmetrics.MetricCollection:
        return torchmetrics.MetricCollection({m: METRICS[m]() for m in self.metrics})


def energy_force_outputs(outputs: Sequence[Output | dict] | None, family: str) -> list[Output | dict]:
    """The outputs of an energy model: by default energy (weight 1) and forces (weight 10).

    Raises:
        ValueError: an output other than energy or forces (``family`` names the task in the message).
    """
    if outputs is None:
        return [Output(keys.ENERGY, weight=1.0), Output(keys.FORCES, weight=10.0)]
    names = [o.name if isinstance(o, Output) else o.get("name") for o in outputs]  # dicts from YAML too
    unknown = [name for name in names if name not in (keys.ENERGY, keys.FORCES)]
    if unknown:
        raise ValueError(f"a {family} task predicts {keys.ENERGY!r} and {keys.FORCES!r}, not {unknown}")
    return list(outputs)
