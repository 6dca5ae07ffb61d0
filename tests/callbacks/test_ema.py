import doctest

import lightning.pytorch as pl
import pytest
import torch

from zoo.callbacks import EMA, _ema


class Drift(pl.LightningModule):
    """One weight pulled towards 1 by SGD; records its value after every step."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.history = []

    def training_step(self, batch, batch_idx):
        return (self.weight - 1.0).square()

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.history.append(float(self.weight.detach()))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(40, 1), batch_size=1)


def _expected(history, decay, warmup):
    average = history[0]  # the first update copies the weights
    for n, weight in enumerate(history[1:], start=1):
        rate = min(decay, (1 + n) / (10 + n)) if warmup else decay
        average = rate * average + (1 - rate) * weight
    return average


def _fit(model, folder, warmup):
    pl.Trainer(max_epochs=1, callbacks=[EMA(decay=0.99, warmup=warmup)], logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, default_root_dir=folder).fit(model)


def test_docstring_example():
    assert doctest.testmod(_ema).failed == 0


@pytest.mark.parametrize("warmup", [True, False])
def test_the_final_model_is_the_warmed_up_average(tmp_path, warmup):
    model = Drift()
    _fit(model, tmp_path, warmup)
    assert len(model.history) == 40
    warmed, fixed = _expected(model.history, 0.99, True), _expected(model.history, 0.99, False)
    assert float(model.weight.detach()) == pytest.approx(warmed if warmup else fixed, rel=1e-5)
    # after 40 steps a fixed decay of 0.99 still holds 67 % of the first weights; the warm-up does not
    assert warmed > 0.9 and fixed < 0.5


class DriftWithTable(Drift):
    """Drift with an integer lookup table, as the element index of atomic numbers is."""

    def __init__(self):
        super().__init__()
        self.register_buffer("table", torch.arange(-1, 118), persistent=False)


@pytest.mark.parametrize("warmup", [True, False])
def test_integer_buffers_stay_exact(tmp_path, warmup):
    # averaging them and truncating back to int64 turned 3 into 2: elements mapped to the wrong
    # index during validation and in the final model (a run on five elements validated 2x worse)
    model = DriftWithTable()
    _fit(model, tmp_path, warmup)
    assert torch.equal(model.table, torch.arange(-1, 118))
    assert model.weight != 0  # the weights were averaged
