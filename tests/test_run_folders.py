"""A command writes only where it is asked to: a failed run leaves no empty run folder, and
`zoo test` exports the tested model only with --export, into the run's root folder."""

import sys
import warnings
from pathlib import Path

import lightning.pytorch as pl

import pytest
import yaml

from zoo import cli
from zoo._lightning_cli import remove_failed_run_folder

DEMO = "qm9_demo"  # the packaged recipe
# qm9_demo on 80 molecules: 2 training steps and 1 validation batch an epoch
TINY = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
        "--data.init_args.reader_kwargs", "{limit: 120}",
        "--data.init_args.split", "{method: random, sizes: [80, 20, 20], seed: 0}"]


class Crash(pl.Callback):
    """Raises in the trainer's setup (``at="setup"``) or when epoch ``at`` starts."""

    def __init__(self, at: str | int = "setup"):
        self.at = at

    def setup(self, trainer, pl_module, stage):
        if self.at == "setup":
            raise RuntimeError("crash in setup")

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.at:
            raise RuntimeError(f"crash at epoch {self.at}")


def _crash(at) -> str:
    return yaml.safe_dump({"class_path": "test_run_folders.Crash", "init_args": {"at": at}},
                          default_flow_style=True).strip()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["zoo"])  # the command is the arguments given, not pytest's
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    return tmp_path


def test_a_failed_fit_removes_the_run_folder_it_created_and_nothing_else(workdir, capsys):
    runs = workdir / "runs" / "qm9_demo"
    previous = runs / "version_0"  # an earlier run's folder, whatever it holds
    previous.mkdir(parents=True)
    (previous / "metrics.csv").write_text("epoch,step\n")

    for at in ("setup", 0):  # before any checkpoint: in setup, at the first epoch
        with pytest.raises(RuntimeError, match="crash"):
            cli.lightning_main(["fit", "--config", DEMO, *TINY, "--trainer.max_epochs", "2",
                                "--trainer.callbacks+", _crash(at)])
        assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["version_0"]
        assert "removed runs/qm9_demo/version_1: the command failed before writing a checkpoint" in capsys.readouterr().out
    assert (previous / "metrics.csv").read_text() == "epoch,step\n"

    # a crash after the first epoch's checkpoint leaves a run to continue
    with pytest.raises(RuntimeError, match="crash at epoch 1"):
        cli.lightning_main(["fit", "--config", DEMO, *TINY, "--trainer.max_epochs", "2",
                            "--trainer.callbacks+", _crash(1)])
    assert (runs / "version_1" / "checkpoints" / "last.ckpt").is_file()


def test_only_a_folder_this_command_created_and_without_checkpoints_is_removed(tmp_path):
    remove_failed_run_folder(None)  # the folder existed before: a continued run
    kept = tmp_path / "version_0"
    (kept / "checkpoints").mkdir(parents=True)
    (kept / "checkpoints" / "epoch=0.ckpt").write_bytes(b"")
    remove_failed_run_folder(kept)
    assert kept.is_dir()
    empty = tmp_path / "version_1"
    (empty / "hessian").mkdir(parents=True)
    (empty / "metrics.csv").write_text("epoch,step,train/loss\n")  # a header, no row yet
    remove_failed_run_folder(empty)
    assert not empty.exists()
    # a run stopped after hours, its checkpoints in a folder of their own: its metrics log stays
    logged = tmp_path / "version_2"
    logged.mkdir()
    (logged / "metrics.csv").write_text("epoch,step,train/loss\n0,9,0.5\n")
    remove_failed_run_folder(logged)
    assert (logged / "metrics.csv").is_file()


def test_zoo_test_exports_only_when_asked_into_the_root_folder(workdir, capsys):
    root = workdir / "elsewhere"  # the recipe's runs/qm9_demo, moved by the user
    common = ["--config", DEMO, *TINY, "--trainer.default_root_dir", str(root),
              "--trainer.logger.init_args.save_dir", str(root)]
    # a time limit: the checkpoint holds a Timer's state, which testing does not restore
    fit = cli.lightning_main(["fit", *common, "--trainer.max_epochs", "1", "--trainer.max_time", "00:01:00:00"])
    best = fit.trainer.checkpoint_callback.best_model_path

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.lightning_main(["test", *common, "--ckpt_path", best])
    # Lightning's notes on the Timer and on the new version folder's checkpoint bookkeeping are
    # about training, nothing a test needs
    assert not [w for w in caught if "ckpt_path" in str(w.message) or "dirpath has changed" in str(w.message)]
    assert not (root / "pretrained").exists()
    cli.lightning_main(["test", *common, "--ckpt_path", best, "--export"])
    assert (root / "pretrained" / "model.safetensors").is_file()
    assert f"exported the tested model to {root / 'pretrained'}" in capsys.readouterr().out
    assert [p.name for p in workdir.iterdir()] == ["elsewhere"]  # nothing in the working directory

    with pytest.raises(ValueError, match="--export writes the tested model after zoo test"):
        cli.lightning_main(["fit", *common, "--trainer.max_epochs", "1", "--export"])
    no_card = [*common, "--trainer.callbacks", "[]", "--ckpt_path", best, "--export"]
    with pytest.raises(ValueError, match="add a zoo.callbacks.ExportPretrained"):
        cli.lightning_main(["test", *no_card])
