import time

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo.callbacks import TrainingTime


class _Slow(pl.LightningModule):
    """Each training step sleeps 20 ms, each validation step 100 ms: only the former must count."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        time.sleep(0.02)
        return self.layer(batch[0]).square().mean()

    def validation_step(self, batch, batch_idx):
        time.sleep(0.1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_training_time_counts_training_steps_only_and_survives_a_resume(tmp_path):
    data = DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=1)
    clock = TrainingTime()
    trainer = pl.Trainer(max_epochs=2, callbacks=[clock], logger=False, enable_progress_bar=False,
                         default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(_Slow(), data, data)
    # 8 steps of 20 ms; validation (8 x 100 ms) excluded
    assert 0.16 <= clock.seconds < 0.5
    assert float(trainer.callback_metrics["time/train_s"]) == pytest.approx(clock.seconds, rel=1e-6)

    resumed = TrainingTime()
    trainer = pl.Trainer(max_epochs=3, callbacks=[resumed], logger=False, enable_progress_bar=False,
                         default_root_dir=tmp_path, num_sanity_val_steps=0)
    trainer.fit(_Slow(), data, data, ckpt_path=trainer_checkpoint(tmp_path))
    assert resumed.seconds >= clock.seconds + 0.08


def trainer_checkpoint(folder):
    return str(next(folder.rglob("*.ckpt")))
