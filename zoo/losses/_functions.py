"""The loss functions and metrics an output or an auxiliary loss may name."""

from __future__ import annotations

import torch
import torchmetrics

#: Losses by name; each maps (prediction, target) to a scalar.
LOSSES = {
    "mse": torch.nn.functional.mse_loss,
    "mae": torch.nn.functional.l1_loss,
    "huber": torch.nn.functional.huber_loss,
    "smooth_l1": torch.nn.functional.smooth_l1_loss,
    # QHNet's Hamiltonian loss: MAE for the many small entries, MSE against the few large errors
    "mae_mse": lambda p, t: torch.nn.functional.l1_loss(p, t) + torch.nn.functional.mse_loss(p, t),
}

#: Metrics by name, as torchmetrics classes (they sync across DDP ranks).
METRICS = {
    "mae": lambda: torchmetrics.MeanAbsoluteError(),
    "rmse": lambda: torchmetrics.MeanSquaredError(squared=False),
    "mse": lambda: torchmetrics.MeanSquaredError(),
    "max_ae": lambda: torchmetrics.MaxMetric(),
}


def check_loss_name(loss: str, what: str) -> None:
    """``ValueError`` naming ``what`` (e.g. ``"output 'energy'"``) and the choices if ``loss`` is no
    key of :data:`LOSSES`."""
    if loss not in LOSSES:
        raise ValueError(f"{what}: unknown loss {loss!r}; choose one of {sorted(LOSSES)}")
