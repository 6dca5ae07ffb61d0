"""The auxiliary-loss interface: a task sums, logs, schedules and saves its auxiliary losses alike."""

import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from zoo.data import AtomicData, Statistics
from zoo.losses import AuxiliaryLoss, Forward, Output, Progress, SelfConsistencyLoss, Step
from zoo.qc import LevelOfTheory
from zoo.tasks import AtomisticTask


class _Energy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, batch):
        return {"energy": scatter(self.linear(batch.pos)[:, 0], batch.batch, reduce="sum")}


class _WeightNorm(AuxiliaryLoss):
    """The squared weights of the model's layer, with a tensor of its own and the statistics' std."""

    name = "weight_norm"
    stages = ("train", "val")

    def __init__(self, weight=1.0, start_epoch=0):
        super().__init__(weight, start_epoch)
        self.register_buffer("scale", torch.ones(()))

    def set_statistics(self, statistics):
        self.scale.fill_(statistics.std("energy"))

    def forward(self, step):
        return step.model.linear.weight.square().sum() * self.scale


class _Shifted(AuxiliaryLoss):
    """Makes the forward pass of training steps: the model on positions moved by 1 Å."""

    name = "shifted"

    def predict(self, model, batch):
        moved = batch.clone()
        moved.pos = moved.pos + 1.0
        return Forward(model(moved))

    def forward(self, step):
        return None  # nothing of its own to add


def _batch():
    generator = torch.Generator().manual_seed(0)
    data = [AtomicData.from_arrays([1, 1, 8], torch.randn(3, 3, generator=generator), energy=float(i)) for i in range(4)]
    return next(iter(DataLoader(data, batch_size=4)))


def test_a_task_adds_logs_and_saves_its_auxiliary_losses():
    regulariser = _WeightNorm(weight=0.5)
    task = AtomisticTask(_Energy(), [Output("energy")], auxiliary_losses=[regulariser])
    assert task.weight_norm is regulariser and list(task.auxiliary_losses) == ["weight_norm"]
    assert "weight_norm.scale" in task.state_dict()  # its tensors are saved under its name
    batch = _batch()
    task.set_statistics(Statistics({"energy": {"std": 3.0}}))
    predictions = task(batch)
    expected = torch.nn.functional.mse_loss(predictions["energy"], batch.energy) \
        + 0.5 * 3.0 * task.model.linear.weight.square().sum()
    assert torch.allclose(task.step_loss(batch, "val"), expected)  # one of its stages
    assert torch.allclose(task.step_loss(batch, "test"), expected - 1.5 * task.model.linear.weight.square().sum())


def test_epochs_and_stages_schedule_the_losses():
    loss = _WeightNorm(start_epoch=2)
    step = Step(_Energy(), _batch(), Forward({}), "train", Progress(epoch=1))
    assert not loss.active(step)
    assert loss.active(Step(step.model, step.batch, step.forward, "train", Progress(epoch=2)))
    sct = SelfConsistencyLoss(LevelOfTheory(), fraction=0.5)
    assert [sct.due(Progress(step=s)) for s in range(4)] == [False, True, False, True]  # evenly spaced
    assert sct.active(Step(step.model, step.batch, step.forward, "val", Progress(step=0)))  # every validation batch
    assert not SelfConsistencyLoss(LevelOfTheory(), fraction=0.0).due(Progress(step=7))


def test_a_loss_may_make_the_forward_pass_of_training_steps():
    task = AtomisticTask(_Energy(), [Output("energy")], auxiliary_losses=[_Shifted()])
    batch = _batch()
    moved = batch.clone()
    moved.pos = moved.pos + 1.0
    trained = torch.nn.functional.mse_loss(task(moved)["energy"], batch.energy)
    assert torch.allclose(task.step_loss(batch, "train"), trained)
    assert torch.allclose(task.step_loss(batch, "val"), torch.nn.functional.mse_loss(task(batch)["energy"], batch.energy))


def test_statistics_reach_the_auxiliary_losses_in_a_fit(tmp_path):
    class Data(pl.LightningDataModule):
        statistics = Statistics({"energy": {"mean": 1.5, "std": 2.0}})

        def train_dataloader(self):
            return DataLoader([_batch()[i] for i in range(4)], batch_size=2)

    task = AtomisticTask(_Energy(), [Output("energy")], auxiliary_losses=[_WeightNorm()])
    pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False, default_root_dir=tmp_path).fit(task, datamodule=Data())
    assert task.weight_norm.scale.item() == 2.0


def test_bad_auxiliary_losses_are_named():
    with pytest.raises(ValueError, match="named 'model'"):
        class Model(_Shifted):
            name = "model"

        AtomisticTask(_Energy(), [Output("energy")], auxiliary_losses=[Model()])
    with pytest.raises(ValueError, match="at most one auxiliary loss may make the forward pass"):
        class Other(_Shifted):
            name = "other"

        AtomisticTask(_Energy(), [Output("energy")], auxiliary_losses=[_Shifted(), Other()])
    with pytest.raises(ValueError, match="must be >= 0"):
        _WeightNorm(weight=-1.0)
    with pytest.raises(TypeError, match="abstract"):
        AuxiliaryLoss()
