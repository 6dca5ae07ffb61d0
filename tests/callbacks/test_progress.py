import re

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo import recipes
from zoo.callbacks import EpochSummary
from zoo.cli import parse_config



class _Regression(pl.LightningModule):
    """Logs what zoo's tasks log: ``train/loss`` per step, validation loss, MAE and a metric to leave out."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        loss = (self.layer(batch[0]) - 1).square().mean()
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        error = self.layer(batch[0]) - 1
        self.log("val/loss", error.square().mean())
        self.log("val/y_mae", error.abs().mean())
        self.log("val/y_max_ae", error.abs().max())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _fit(tmp_path, summary: EpochSummary, max_epochs: int = 2) -> pl.Trainer:
    data = DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=1)
    trainer = pl.Trainer(max_epochs=max_epochs, callbacks=[summary], logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(_Regression(), data, data)
    return trainer


def test_one_line_per_epoch_with_the_epoch_mean_training_loss_and_validation_metrics(tmp_path, capsys):
    _fit(tmp_path, EpochSummary(heartbeat_s=None))
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2  # the sanity check's validation makes no line
    assert lines[0].startswith("epoch=0 step=4 (1/2 epochs, ") and lines[1].startswith("epoch=1 step=8 (2/2 epochs, ")
    for line in lines:
        names = re.findall(r"(\S+)=[-0-9.e]+", line.split(")", 1)[1])
        assert names == ["train/loss", "val/loss", "val/y_mae"]  # no max_ae: not a metric that matters


def test_train_loss_is_the_mean_of_the_epoch_not_its_last_batch(tmp_path, capsys):
    summary = EpochSummary(heartbeat_s=None)
    losses = []

    class Recorder(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    data = DataLoader(TensorDataset(torch.ones(4, 1)), batch_size=1)
    pl.Trainer(max_epochs=1, callbacks=[summary, Recorder()], logger=False, enable_progress_bar=False,
               enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path,
               limit_val_batches=0).fit(_Regression(), data)
    shown = float(re.search(r"train/loss=(\S+)", capsys.readouterr().out).group(1))
    assert shown == pytest.approx(sum(losses) / len(losses), rel=1e-3)
    assert shown != pytest.approx(losses[-1], rel=1e-3)


def test_a_long_epoch_gets_heartbeat_lines(tmp_path, capsys):
    _fit(tmp_path, EpochSummary(heartbeat_s=0.0), max_epochs=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(" (")[1].split(",")[0] for line in lines[:4]] == [f"batch {i}/4" for i in range(1, 5)]
    assert lines[-1].startswith("epoch=0 step=4 (1/1 epochs, ") and "val/loss=" in lines[-1]


def test_every_recipe_prints_its_epochs():
    for name in recipes.names(add_ons=False):
        callbacks = parse_config(["fit", "--config", name])["trainer"]["callbacks"]  # with its bases'
        assert "zoo.callbacks.EpochSummary" in [c["class_path"] for c in callbacks], name
