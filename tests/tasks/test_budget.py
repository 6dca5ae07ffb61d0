import datetime
import time

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from tests.tasks.test_base import _loader, _PositionSum
from zoo.tasks import AnnealOverBudget, AtomisticTask, Output, budget_fraction


def _optimizer(lr=0.1):
    return torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=lr)


@pytest.mark.parametrize("shape, middle", [("linear", 0.55), ("cosine", 0.55)])
def test_anneal_goes_from_the_initial_rate_to_the_final_factor(shape, middle):
    scheduler = AnnealOverBudget(_optimizer(), shape=shape, final_factor=0.1)
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    for fraction, factor in ((0.0, 1.0), (0.5, middle), (1.0, 0.1), (1.5, 0.1)):
        scheduler.set_fraction(fraction)
        assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * factor)
    scheduler.set_fraction(0.25)
    assert scheduler.factor(0.25) == pytest.approx(0.775 if shape == "linear" else 0.1 + 0.9 * 0.5 * (1 + 2 ** -0.5))


def test_warmup_rises_linearly_then_decays():
    scheduler = AnnealOverBudget(_optimizer(), warmup=0.2)
    assert [scheduler.factor(f) for f in (0.0, 0.1, 0.2, 0.6, 1.0)] == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0])


@pytest.mark.parametrize("options, message", [({"shape": "step"}, "unknown annealing shape"),
                                              ({"final_factor": 2.0}, "final_factor"),
                                              ({"warmup": 1.0}, "warmup")])
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        AnnealOverBudget(_optimizer(), **options)


class _RecordRates(Callback):
    def __init__(self):
        self.rates, self.fractions = [], []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # callbacks run before the module's hook: record what the step after this one uses
        self.fractions.append(budget_fraction(trainer))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.rates.append(trainer.optimizers[0].param_groups[0]["lr"])


def _task():
    return AtomisticTask(_PositionSum(), [Output("energy")], optimizer=lambda p: torch.optim.SGD(p, lr=0.01),
                         lr_scheduler=lambda o: AnnealOverBudget(o))


def _fit(tmp_path, callbacks=(), ckpt_path=None, **limits):
    trainer = pl.Trainer(default_root_dir=tmp_path, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=list(callbacks), **limits)
    # this test's own checkpoint, whose hyper-parameters hold Output objects (a task built in Python)
    trainer.fit(_task(), _loader(), _loader(), ckpt_path=ckpt_path, weights_only=False)
    return trainer


def test_a_fit_anneals_over_its_epochs_and_a_resumed_fit_continues(tmp_path):
    # 16 structures in batches of 4: 4 steps per epoch, 20 in 5 epochs
    record = _RecordRates()
    _fit(tmp_path, [record], max_epochs=5)
    assert record.rates == pytest.approx([0.01 * (1 - step / 20) for step in range(20)])
    resumed = _RecordRates()
    checkpoint = next((tmp_path / "checkpoints").glob("*.ckpt"))
    _fit(tmp_path, [resumed], ckpt_path=checkpoint, max_epochs=10)
    # the resumed run has a longer budget: its schedule goes on from step 20 of 40, not from the start
    assert resumed.rates == pytest.approx([0.01 * (1 - step / 40) for step in range(20, 40)])


class _SlowSteps(Callback):
    def on_train_batch_end(self, *args):
        time.sleep(0.05)


def test_when_the_clock_ends_the_run_the_fraction_follows_the_clock(tmp_path):
    # max_epochs far away: the epoch fraction stays small, the clock's reaches the end
    record = _RecordRates()
    trainer = _fit(tmp_path, [_SlowSteps(), record], max_epochs=10_000,
                   max_time=datetime.timedelta(seconds=3))
    assert trainer.global_step < 10_000 * 4 / 10
    assert record.fractions[-1] > 0.8 > trainer.global_step / trainer.estimated_stepping_batches
    assert record.rates[-1] < 0.2 * 0.01
    assert all(a >= b for a, b in zip(record.rates, record.rates[1:]))
