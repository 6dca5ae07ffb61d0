"""What a task trains: a list of outputs, each with its loss, weight, scale, metrics and label mask
(SchNetPack 2's ``ModelOutput``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torchmetrics

from zoo.data import keys
from zoo.losses._functions import LOSSES, METRICS, check_loss_name
from zoo.losses._masks import label_mask


@dataclass
class Output:
    """One predicted quantity of a task, compared with its labels where they exist.

    Args:
        name: key of the prediction in the model's output dict.
        target: key of the label in the batch (defaults to ``name``).
        loss: one of :data:`~zoo.losses.LOSSES`.
        weight: weight of this output's loss in the total loss.
        scale: the loss compares ``(prediction - target) / scale``; a typical spread of the
            target (e.g. its standard deviation) makes weights comparable across units.
        metrics: names from :data:`~zoo.losses.METRICS`, computed in the target's own units.

    Example:
        >>> from torch_geometric.data import Batch
        >>> from zoo.data import AtomicData
        >>> h2 = [AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]], energy=e) for e in (-1.0, 0.0)]
        >>> for structure, labelled in zip(h2, (True, False)):  # the second has no energy label
        ...     structure.has_energy = torch.tensor([labelled])
        >>> batch = Batch.from_data_list(h2)
        >>> prediction, target = Output("energy").select(batch, {"energy": torch.tensor([-0.5, 7.0])})
        >>> prediction.tolist(), target.tolist()
        ([-0.5], [-1.0])
    """

    name: str
    target: str | None = None
    loss: str = "mse"
    weight: float = 1.0
    scale: float = 1.0
    metrics: list[str] = field(default_factory=lambda: ["mae", "rmse"])

    def __post_init__(self):
        self.target = self.target or self.name
        check_loss_name(self.loss, f"output {self.name!r}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"output {self.name!r}: unknown metrics {unknown}; choose from {sorted(METRICS)}")
        if self.weight < 0 or not self.scale > 0:
            raise ValueError(f"output {self.name!r}: weight must be >= 0 and scale > 0")

    def select(self, batch, predictions, atoms: torch.Tensor | None = None,
               structures: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(prediction, target)`` on the rows that hold a label, or ``None`` if none does.

        The rows are those of the label's mask (:func:`~zoo.losses.label_mask`) and, for a
        per-atom target, of ``atoms`` ([n_atoms] bool, e.g. the atoms DeNS did not corrupt), for
        a per-structure one, of ``structures`` ([n_structures] bool).

        Raises:
            KeyError: the batch has no ``target`` at all (a dataset without these labels).
        """
        if self.target not in batch:
            available = sorted(k for k in batch.keys() if k not in (keys.BATCH, "ptr"))
            raise KeyError(
                f"the batch has no labels {self.target!r} for output {self.name!r}; "
                f"available keys: {available}. Choose a dataset that has them or drop the output."
            )
        target = batch[self.target]
        prediction = predictions[self.name]
        if prediction.shape != target.shape:
            prediction = prediction.reshape(target.shape)
        rows = label_mask(batch, self.target)
        if atoms is not None and self.target in keys.PER_ATOM:
            rows = atoms if rows is None else rows & atoms
        if structures is not None and self.target in keys.PER_STRUCTURE:
            rows = structures if rows is None else rows & structures
        if rows is None:
            return prediction, target
        if not rows.any():
            return None
        return prediction[rows], target[rows]

    def compute_loss(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of already selected rows (see :meth:`select`), on the ``scale``."""
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
