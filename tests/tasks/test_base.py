import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from zoo.data import AtomicData
from zoo.tasks import AtomisticTask, Output


class _PositionSum(torch.nn.Module):
    """Energy = sum over atoms of a linear function of position; dipole = its weights."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def forward(self, batch):
        energy = scatter(self.linear(batch.pos)[:, 0], batch.batch, reduce="sum")
        return {"energy": energy, "twice": 2 * energy}


def _loader(n=16, energy=lambda pos: pos.sum(), nan_frames=()):
    gen = torch.Generator().manual_seed(0)
    data = []
    for _ in range(n):
        pos = torch.randn(3, 3, generator=gen)
        data.append(AtomicData.from_arrays([1, 1, 8], pos, energy=float(energy(pos))))
    for i in nan_frames:  # set afterwards: from_arrays, and so every reader, refuses NaN labels
        data[i].energy = torch.tensor([float("nan")])
    return DataLoader(data, batch_size=4)


def test_total_loss_is_weighted_sum_of_outputs():
    task = AtomisticTask(_PositionSum(), [Output("energy", weight=2.0), Output("twice", target="energy", loss="mae", scale=2.0)])
    batch = next(iter(_loader()))
    predictions = task(batch)
    loss = task.compute_loss(batch, predictions, "val")
    e, t = predictions["energy"], batch.energy
    expected = 2.0 * torch.nn.functional.mse_loss(e, t) + torch.nn.functional.l1_loss(2 * e / 2.0, t / 2.0)
    assert torch.allclose(loss, expected)


def test_fit_learns_and_logs_metrics(tmp_path):
    task = AtomisticTask(_PositionSum(), [Output("energy", metrics=["mae", "rmse"])],
                         optimizer=lambda p: torch.optim.Adam(p, lr=0.05))
    trainer = pl.Trainer(max_epochs=30, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(task, _loader(), _loader())
    assert trainer.callback_metrics["val/energy_mae"] < 0.05
    assert {"val/loss", "val/energy_rmse", "train/energy_loss"} <= set(trainer.callback_metrics)


def test_a_task_built_in_python_fits_without_lightnings_pickling_warnings(tmp_path, recwarn):
    # the model is a module and the optimizer a lambda: neither belongs in the saved hyper-parameters
    task = AtomisticTask(_PositionSum(), [Output("energy")], optimizer=lambda p: torch.optim.SGD(p, lr=0.01))
    assert "optimizer" not in task.hparams and "model" not in task.hparams
    _trainer(default_root_dir=tmp_path).fit(task, _loader(), _loader())
    assert not [w for w in recwarn if "hparams" in str(w.message) or "nn.Module" in str(w.message)]


def test_missing_labels_name_the_key():
    task = AtomisticTask(_PositionSum(), [Output("energy", target="U0")])
    batch = next(iter(_loader()))
    with pytest.raises(KeyError, match="no labels 'U0'.*available keys"):
        task.compute_loss(batch, task(batch), "train")


def _trainer(**kwargs):
    return pl.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                      enable_model_summary=False, **kwargs)


def test_nan_loss_stops_training():
    task = AtomisticTask(_PositionSum(), [Output("energy")])
    with pytest.raises(FloatingPointError, match="train loss is nan on batch 0 .*lower the learning rate"):
        _trainer().fit(task, _loader(nan_frames=range(16)))


def test_nan_validation_loss_stops_the_fit():
    # one NaN label in the second validation batch: the fit used to end with exit 0 and val/loss = nan
    task = AtomisticTask(_PositionSum(), [Output("energy")])
    trainer = _trainer(num_sanity_val_steps=0)  # the epoch's validation, not the sanity check, meets it
    with pytest.raises(FloatingPointError, match="val loss is nan on batch 1 at training step 4: .*inputs hold NaN"):
        trainer.fit(task, _loader(), _loader(n=8, nan_frames=[5]))


def test_nan_test_loss_is_an_error():
    task = AtomisticTask(_PositionSum(), [Output("energy")])
    with pytest.raises(FloatingPointError, match="test loss is nan on batch 0 .*model produced NaN"):
        _trainer().test(task, _loader(n=4, nan_frames=[0]))


@pytest.mark.parametrize("kwargs, message", [
    ({"loss": "cross_entropy"}, "unknown loss"),
    ({"metrics": ["r2"]}, "unknown metrics"),
    ({"scale": 0.0}, "scale > 0"),
])
def test_bad_outputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Output("energy", **kwargs)
    with pytest.raises(ValueError, match="at least one output"):
        AtomisticTask(_PositionSum(), [])


def test_extra_loss_terms_join_the_total():
    task = AtomisticTask(_PositionSum(), [Output("energy", weight=2.0)])
    batch = next(iter(_loader()))
    predictions = task(batch)
    extra = torch.tensor(0.25)
    loss = task.compute_loss(batch, predictions, "val", terms={"denoising": (4.0, extra)})
    assert torch.allclose(loss, 2.0 * torch.nn.functional.mse_loss(predictions["energy"], batch.energy) + 1.0)
