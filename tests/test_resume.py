"""Resuming a run: last.ckpt holds the last epoch, and `zoo fit --ckpt_path last` continues the
recipe's run in its own folder, with one writer per folder."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from jsonargparse import Namespace
from lightning.pytorch.loggers import CSVLogger

from zoo import cli, recipes
from zoo.cli import parse_config
from zoo._files import exclusive_output
from zoo._lightning_cli import AtomicCheckpointIO, keep_csv_metrics, resolve_checkpoint

DEMO = "qm9_demo"  # the packaged recipe
# qm9_demo on 80 molecules: 2 training steps and 1 validation batch an epoch
TINY = ["--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
        "--data.init_args.reader_kwargs", "{limit: 120}",
        "--data.init_args.split", "{method: random, sizes: [80, 20, 20], seed: 0}"]


class EpochProbe(pl.Callback):
    """Appends each epoch's number to ``path`` when it starts; kills its own process at ``kill_at``."""

    def __init__(self, path: str, kill_at: int = -1):
        self.path, self.kill_at = path, kill_at

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up at all, like a node lost or `kill -9`
        with open(self.path, "a") as stream:
            stream.write(f"{trainer.current_epoch}\n")


def _probe(path: Path, kill_at: int = -1) -> str:
    probe = {"class_path": "test_resume.EpochProbe", "init_args": {"path": str(path), "kill_at": kill_at}}
    return yaml.safe_dump(probe, default_flow_style=True).strip()


def _checkpoint_callbacks(recipe: str) -> list[dict]:
    """The arguments of the recipe's ModelCheckpoint callbacks (with its bases'), defaults filled in."""
    callbacks = parse_config(["fit", "--config", recipe])["trainer"]["callbacks"]
    return [c["init_args"] for c in callbacks if c["class_path"].endswith("callbacks.ModelCheckpoint")]


@pytest.mark.parametrize("recipe", recipes.names(add_ons=False))
def test_every_recipe_writes_last_ckpt_at_every_epoch_into_its_run_folder(recipe):
    checkpoints = _checkpoint_callbacks(recipe)
    # Lightning 2.6's save_last rewrites last.ckpt only with a new best checkpoint
    assert not any(c["save_last"] for c in checkpoints)
    assert any(c["filename"] == "last" and c["enable_version_counter"] is False for c in checkpoints)
    # in the run folder (version_N/checkpoints), so that each run, and each resumed run, has its own
    assert not any(c["dirpath"] for c in checkpoints)


class _WorseEveryEpoch(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", float(self.current_epoch))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters())


def test_last_ckpt_is_the_last_epoch_when_validation_gets_worse(tmp_path):
    """The recipes' checkpoint callbacks: best.ckpt keeps epoch 0, last.ckpt follows every epoch."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(8, 2)), batch_size=4)
    callbacks = [ModelCheckpoint(**args) for args in _checkpoint_callbacks(DEMO)]
    trainer = pl.Trainer(max_epochs=3, callbacks=callbacks, logger=CSVLogger(tmp_path, name=""),
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_WorseEveryEpoch(), data, data)
    folder = Path(trainer.log_dir) / "checkpoints"
    epoch = {name: torch.load(folder / f"{name}.ckpt", weights_only=True)["epoch"] for name in ("best", "last")}
    assert epoch == {"best": 0, "last": 2}
    assert trainer.checkpoint_callback.best_model_path == str(folder / "best.ckpt")  # what `zoo demo` tests


@pytest.mark.slow
def test_a_killed_fit_continues_in_its_run_folder(tmp_path, monkeypatch, capsys):
    """`kill -9` at the start of epoch 2, then `zoo fit --ckpt_path last`: epochs 2 and 3 are trained
    in version_0, with the optimizer, EMA and learning curve of epochs 0 and 1."""
    epochs = tmp_path / "epochs.txt"
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    killed = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "fit", "--config", DEMO, *TINY, "--trainer.max_epochs", "4",
         "--trainer.callbacks+", _probe(epochs, kill_at=2)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run = tmp_path / "runs" / "qm9_demo" / "version_0"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["zoo"])  # the command is the arguments given below, not pytest's
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    resumed = cli.lightning_main(["fit", "--config", DEMO, *TINY, "--trainer.max_epochs", "4",
                                  "--trainer.callbacks+", _probe(epochs), "--ckpt_path", "last"])
    told = capsys.readouterr().out
    assert ("zoo: fit: continuing runs/qm9_demo/version_0 from runs/qm9_demo/version_0/checkpoints/last.ckpt "
            "(epoch=1, step=4)") in told

    assert epochs.read_text().split() == ["0", "1", "2", "3"]  # epochs 2 and 3 by the resumed fit
    assert Path(resumed.trainer.log_dir).resolve() == run.resolve()
    assert sorted(p.name for p in run.parent.iterdir() if p.is_dir()) == ["version_0"]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert (last["epoch"], last["global_step"]) == (3, 8)
    assert last["optimizer_states"][0]["state"][0]["step"] == 8  # Adam's moments went on, not restarted
    assert last["averaging_state"]["n_averaged"] == 8  # so did the EMA
    # the resumed fit's best epoch is best.ckpt, the file `zoo test` is told to test, not a best-v1.ckpt
    # beside the killed run's (which would leave best.ckpt at a stale epoch)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    with open(run / "metrics.csv", newline="") as stream:
        validated = [row["epoch"] for row in csv.DictReader(stream) if row["val/loss"]]
    assert validated == ["0", "1", "2", "3"]  # the killed run's epochs kept, once each
    with exclusive_output(run):  # released when the command ended
        pass


def test_last_without_a_previous_run_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["zoo"])
    assert cli.main(["fit", "--config", DEMO, "--ckpt_path", "last"]) == 1
    error = capsys.readouterr().err
    assert "zoo fit: error: --ckpt_path last: no last.ckpt in runs/qm9_demo/*/checkpoints" in error
    assert "run without --ckpt_path to start a new run" in error


def test_a_run_folder_being_written_is_refused_to_a_second_fit(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["zoo"])
    with exclusive_output(tmp_path / "runs" / "qm9_demo" / "version_0"):
        code = cli.main(["fit", "--config", DEMO, "--trainer.logger.init_args.version", "0"])
    assert code == 1
    error = capsys.readouterr().err
    assert "zoo fit: error: runs/qm9_demo/version_0 is being written by another run" in error
    assert f"pid {os.getpid()}" in error


def _fake_checkpoint(path: Path, epoch: int, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": epoch, "global_step": 10 * (epoch + 1)}, path)
    os.utime(path, (mtime, mtime))
    return path


def _config(root: Path, ckpt_path: str) -> Namespace:
    logger = Namespace(class_path="lightning.pytorch.loggers.CSVLogger",
                       init_args=Namespace(save_dir=str(root), name="", version=None))
    return Namespace(ckpt_path=ckpt_path, trainer=Namespace(logger=logger, callbacks=[], default_root_dir=str(root)))


def test_last_is_the_most_recently_written_last_ckpt_and_a_fit_continues_its_folder(tmp_path, capsys):
    _fake_checkpoint(tmp_path / "version_3" / "checkpoints" / "last.ckpt", epoch=7, mtime=1_000)
    newest = _fake_checkpoint(tmp_path / "version_1" / "checkpoints" / "last.ckpt", epoch=2, mtime=2_000)
    (tmp_path / "version_4").mkdir()  # a later `zoo test`: no checkpoints

    config = _config(tmp_path, "last")
    assert resolve_checkpoint("fit", config) == newest.parent.parent
    assert config.ckpt_path == str(newest)
    assert config.trainer.logger.init_args.version == 1
    assert f"continuing {tmp_path / 'version_1'} from {newest} (epoch=2, step=30)" in capsys.readouterr().out

    config = _config(tmp_path, "last")  # other commands read the checkpoint and keep their own folder
    assert resolve_checkpoint("test", config) is None
    assert (config.ckpt_path, config.trainer.logger.init_args.version) == (str(newest), None)


def test_a_checkpoint_path_continues_its_run_folder_only_when_it_is_one_of_the_recipes(tmp_path, capsys):
    inside = _fake_checkpoint(tmp_path / "runs" / "v" / "checkpoints" / "epoch=4.ckpt", epoch=4, mtime=1_000)
    config = _config(tmp_path / "runs", str(inside))
    assert resolve_checkpoint("fit", config) == inside.parent.parent
    assert config.trainer.logger.init_args.version == "v"  # a named version stays a name

    elsewhere = _fake_checkpoint(tmp_path / "copied" / "last.ckpt", epoch=4, mtime=1_000)
    config = _config(tmp_path / "runs", str(elsewhere))
    assert resolve_checkpoint("fit", config) is None
    assert config.trainer.logger.init_args.version is None
    assert f"fit: resuming from {elsewhere} (epoch=4, step=50); this run has its own folder" in capsys.readouterr().out


def test_the_resumed_log_keeps_the_rows_of_the_checkpoints_epochs(tmp_path):
    folder = tmp_path / "version_0"
    folder.mkdir()
    (folder / "metrics.csv").write_text(
        "epoch,step,train/loss,val/loss\n0,1,0.5,\n0,2,,0.4\n1,3,0.3,\n1,4,,0.25\n2,5,0.2,\n2,6")  # cut by a kill
    checkpoint = _fake_checkpoint(folder / "checkpoints" / "last.ckpt", epoch=1, mtime=1_000)
    logger = CSVLogger(tmp_path, name="", version=0)
    keep_csv_metrics(logger, checkpoint)
    logger.log_metrics({"epoch": 2, "train/loss": 0.19}, step=5)
    logger.save()
    assert (folder / "metrics.csv").read_text().splitlines() == [
        "epoch,step,train/loss,val/loss", "0,1,0.5,", "0,2,,0.4", "1,3,0.3,", "1,4,,0.25", "2,5,0.19,"]


def test_a_checkpoint_write_that_fails_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    path = tmp_path / "last.ckpt"
    writer = AtomicCheckpointIO()
    writer.save_checkpoint({"epoch": 1}, path)

    def killed_while_writing(self, checkpoint, target, storage_options=None):
        Path(target).write_bytes(b"half a checkp")
        raise KeyboardInterrupt

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", killed_while_writing)
    with pytest.raises(KeyboardInterrupt):
        writer.save_checkpoint({"epoch": 2}, path)
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
