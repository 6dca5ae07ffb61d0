"""One line of progress per training epoch, readable in a terminal and in a log file alike."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import torch

#: What "the metrics that matter" are by default: every validation loss, MAE and RMSD.
DEFAULT_METRICS = ("val/*loss", "val/*mae*", "val/*rmsd*")


class EpochSummary(pl.Callback):
    """Prints one line per training epoch: epoch, step, elapsed time and the metrics that matter.

    Recipes turn Lightning's progress bar off (a bar redrawn in place makes a log file
    unreadable); this line works in a terminal and in a log alike, e.g.

        epoch=3 step=252 (4/8 epochs, 41.2 s)  train/loss=0.1234  val/U0_loss=0.2345  val/loss=0.2345  val/U0_mae=0.14

    ``epoch`` and ``step`` are numbered as in Lightning's checkpoint names, so the line of an epoch
    and the ``last.ckpt`` written at its end say the same. ``train/loss`` is the mean of the
    epoch's training losses (what the training steps returned), not the loss of its last batch; the
    validation metrics are those of the validation run during the epoch, if one ran.

    An epoch longer than ``heartbeat_s`` also gets a line every ``heartbeat_s`` seconds, with the
    batch reached and the mean training loss of the epoch so far, so that a long epoch is not
    silent. Lines go to standard output, flushed, from the global rank zero only.

    Args:
        metrics: shell-style patterns (``fnmatch``) of the logged metrics to show, in this order;
            by default every validation loss, MAE and RMSD.
        heartbeat_s: seconds between lines inside an epoch; ``None`` for epoch lines only.
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS, heartbeat_s: float | None = 60.0):
        self.metrics = tuple(metrics)
        self.heartbeat_s = heartbeat_s
        self._fit_start = 0.0
        self._last_line = 0.0
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0
        self._validation: dict[str, float] = {}

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = self._last_line = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loss_sum, self._loss_count = None, 0
        self._validation = {}

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):  # None for a skipped step
            # summed as a tensor: reading its value at every step would wait for an accelerator
            loss = loss.detach().float()
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_count += 1
        if self.heartbeat_s is not None and time.perf_counter() - self._last_line >= self.heartbeat_s:
            batches = trainer.num_training_batches
            within = f"batch {batch_idx + 1}/{batches}" if isinstance(batches, int) else f"batch {batch_idx + 1}"
            self._print(trainer, within, self._train_loss())

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # read here, after Lightning has reduced the epoch's validation metrics
        if not trainer.sanity_checking:
            self._validation = self._selected(trainer.callback_metrics)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # the epoch's last step is done: Lightning counts it in global_step already
        epochs = [f"{trainer.current_epoch + 1}/{trainer.max_epochs} epochs"] if (trainer.max_epochs or -1) > 0 else []
        self._print(trainer, ", ".join(epochs), {**self._train_loss(), **self._validation})

    def _train_loss(self) -> dict[str, float]:
        return {"train/loss": float(self._loss_sum) / self._loss_count} if self._loss_count else {}

    def _selected(self, logged: Mapping[str, torch.Tensor]) -> dict[str, float]:
        selected = {}
        for pattern in self.metrics:
            for name in sorted(fnmatch.filter(logged, pattern)):
                selected.setdefault(name, float(logged[name]))
        return selected

    def _print(self, trainer: pl.Trainer, where: str, values: Mapping[str, float]) -> None:
        now = time.perf_counter()
        self._last_line = now
        if not trainer.is_global_zero:
            return
        steps = [f"{trainer.global_step}/{trainer.max_steps} steps"] if trainer.max_steps > 0 else []
        progress = ", ".join(part for part in (where, *steps, f"{now - self._fit_start:.1f} s") if part)
        shown = "  ".join(f"{name}={value:.4g}" for name, value in values.items())
        print(f"epoch={trainer.current_epoch} step={trainer.global_step} ({progress})  {shown}".rstrip(), flush=True)
