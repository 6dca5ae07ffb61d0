"""Log the wall-clock time spent training, so that learning curves can be read against cost."""

from __future__ import annotations

import time

import lightning.pytorch as pl


class TrainingTime(pl.Callback):
    """Logs ``time/train_s``: seconds spent in training steps so far, at every validation.

    Only the training batches count (forward, backward, optimizer step, and for self-consistency
    training the Fock builds), not validation or checkpointing, so two runs that validate
    differently compare by the cost of what they learn from. The total survives a resume from a
    checkpoint. Plot any validation metric of the CSV log against it.
    """

    def __init__(self):
        self.seconds = 0.0
        self._start: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            pl_module.log("time/train_s", self.seconds, sync_dist=False)

    def state_dict(self) -> dict:
        return {"seconds": self.seconds}

    def load_state_dict(self, state_dict: dict) -> None:
        self.seconds = float(state_dict["seconds"])
