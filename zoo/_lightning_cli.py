"""zoo's LightningCLI: a run resumes in its own folder, and each folder has one writer.

Lightning alone gets these wrong for a recipe's run (a CSV or TensorBoard logger writing
``<save_dir>/<name>/version_N``, checkpoints in its ``checkpoints/``):

- ``--ckpt_path last`` looks for ``last.ckpt`` in the folder of the run being started, a new
  ``version_N+1`` that holds nothing yet, and quietly trains from epoch 0. Here ``last`` is the
  newest ``last.ckpt`` of the recipe's run folders (or of a checkpoint callback's fixed
  ``dirpath``); with none, the command stops and says so.
- Resuming writes a new ``version_N+1``. Here a fit from a checkpoint inside one of the recipe's run
  folders continues that folder: the logger's version is pinned to it before the logger is built,
  and the ``metrics.csv`` rows of the epochs the checkpoint holds are kept (CSVLogger deletes the
  file when it starts in a folder that has one).
- Two commands may write one folder. Here a command holds the single-writer lock of its run folder
  (:func:`zoo._files.exclusive_output`; a fit also locks a fixed checkpoint folder) from before its
  first write until it ends, and checkpoints are written through :func:`zoo._files.atomic_path`.

Which checkpoint and epoch a command starts from is printed on one line.

And a command writes only where it is asked to:

- A command that fails (an error in setup, a crash before the first checkpoint) removes the run
  folder it created, if that holds no checkpoint, rather than leave an empty ``version_N`` behind;
  a folder that existed before the command (a continued run) is never removed.
- ``zoo test`` writes the tested model for the registry (the recipe's
  :class:`~zoo.callbacks.ExportPretrained`) only with ``--export``, into its run folder unless the
  recipe names another.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib
import logging
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from fsspec.utils import get_protocol
from jsonargparse import ActionYesNo, Namespace
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from zoo import recipes
from zoo._files import atomic_path, exclusive_output
from zoo._lightning_noise import ignore_lightning_noise
from zoo.callbacks import ExportPretrained

#: The checkpoint that ``--ckpt_path last`` names: the recipes write it at the end of every epoch.
LAST_CHECKPOINT = "last.ckpt"


class NothingToResumeError(FileNotFoundError):
    """``--ckpt_path last`` was given, and the recipe's runs hold no ``last.ckpt``."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, with each file written through :func:`zoo._files.atomic_path`.

    Lightning writes a checkpoint into the system's temporary folder and moves it into place: when
    that folder is on another filesystem than the run (as on most clusters), the move is a copy, and a
    run killed during it leaves half a ``last.ckpt``. Remote paths keep Lightning's own writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        if get_protocol(str(path)) != "file":
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


@rank_zero_only
def _tell(message: str) -> None:
    print(f"zoo: {message}", flush=True)


def _progress(checkpoint: Path) -> tuple[int, int]:
    """The epoch (from 0) and optimizer step a Lightning checkpoint was saved at."""
    # mmap: the weights are not read
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return state["epoch"], state["global_step"]


def _where(checkpoint: Path) -> str:
    epoch, step = _progress(checkpoint)
    return f"{checkpoint} (epoch={epoch}, step={step})"  # as Lightning names its checkpoint files


def _run_logger_args(trainer_config: Namespace) -> Namespace | None:
    """``init_args`` of the logger whose ``save_dir``, ``name`` and ``version`` name the run folder.

    Lightning names the run folder after the first logger. ``None`` when there is no logger
    (``logger: false``) or when it is Lightning's default one (``logger`` not configured), whose
    version cannot be set from the config.
    """
    logger = trainer_config.get("logger")
    if isinstance(logger, list):
        logger = logger[0] if logger else None
    if isinstance(logger, Namespace) and "save_dir" in (logger.get("init_args") or {}):
        return logger.init_args
    return None


def _fixed_checkpoint_folders(trainer_config: Namespace) -> list[Path]:
    """Where the config's checkpoint callbacks write when that is not inside a run folder.

    A callback's own ``dirpath``, or ``<default_root_dir>/checkpoints`` when there is no logger.
    """
    no_logger = trainer_config.get("logger") is False
    root = Path(trainer_config.get("default_root_dir") or ".")
    folders = []
    for callback in trainer_config.get("callbacks") or []:
        module, _, name = callback.class_path.rpartition(".")
        if not issubclass(getattr(importlib.import_module(module), name), ModelCheckpoint):
            continue
        dirpath = (callback.get("init_args") or {}).get("dirpath")
        if dirpath:
            folders.append(Path(dirpath))
        elif no_logger:
            folders.append(root / "checkpoints")
    return folders


def _run_folder_of(checkpoint: Path, runs_root: Path) -> Path | None:
    """The run folder ``<runs_root>/<version>`` that holds ``checkpoint`` in its ``checkpoints/``."""
    folder = checkpoint.resolve().parent
    if folder.name == "checkpoints" and folder.parent.parent == runs_root.resolve():
        return folder.parent
    return None


def resolve_checkpoint(subcommand: str, config: Namespace) -> Path | None:
    """Make ``config.ckpt_path`` a file, and pin the logger to the run folder a fit continues.

    ``last`` becomes the most recently written ``last.ckpt`` among the recipe's run folders
    (``<save_dir>/<name>/*/checkpoints/``) and its checkpoint callbacks' fixed folders. A fit from a
    checkpoint inside one of the run folders gets that folder's version (unless the config names
    another), so the run continues in it; from anywhere else it starts a new run folder. Other
    values (``best``, ``hpc``, ``registry:...``, a missing file) are left to Lightning. Returns the
    run folder a fit continues, if any.

    Raises:
        NothingToResumeError: ``last``, and no ``last.ckpt`` in any of those folders.
    """
    ckpt_path = config.get("ckpt_path")
    if ckpt_path is None or (ckpt_path != "last" and not Path(ckpt_path).is_file()):
        return None
    logger_args = _run_logger_args(config.trainer)
    runs_root = Path(logger_args.save_dir) / (logger_args.name or "") if logger_args is not None else None
    if ckpt_path == "last":
        config.ckpt_path = str(_newest_last_checkpoint(runs_root, _fixed_checkpoint_folders(config.trainer)))
    checkpoint = Path(config.ckpt_path)
    if subcommand != "fit":
        _tell(f"{subcommand}: checkpoint {_where(checkpoint)}")
        return None
    run_folder = _run_folder_of(checkpoint, runs_root) if runs_root is not None else None
    if run_folder is not None:
        numbered = re.fullmatch(r"version_(\d+)", run_folder.name)
        version = int(numbered.group(1)) if numbered else run_folder.name
        if logger_args.version in (None, version):  # a version given on purpose starts that folder
            logger_args.version = version
            _tell(f"fit: continuing {runs_root / run_folder.name} from {_where(checkpoint)}")
            return run_folder
    _tell(f"fit: resuming from {_where(checkpoint)}; this run has its own folder")
    return None


def _newest_last_checkpoint(runs_root: Path | None, fixed_folders: list[Path]) -> Path:
    searched = ([runs_root / "*" / "checkpoints"] if runs_root is not None else []) + fixed_folders
    if not searched:
        raise NothingToResumeError(
            "--ckpt_path last finds a recipe's runs through its trainer.logger (a CSVLogger or "
            "TensorBoardLogger with a save_dir) or a checkpoint callback's dirpath; this config has "
            "neither, so give the checkpoint's path"
        )
    candidates = [folder / LAST_CHECKPOINT for folder in fixed_folders]
    if runs_root is not None:
        candidates += runs_root.glob(f"*/checkpoints/{LAST_CHECKPOINT}")
    candidates = [path for path in candidates if path.is_file()]
    if not candidates:
        raise NothingToResumeError(
            f"--ckpt_path last: no {LAST_CHECKPOINT} in {' or '.join(map(str, searched))}, so no run to "
            "continue (wrong folder or recipe?); run without --ckpt_path to start a new run"
        )
    return max(candidates, key=lambda path: path.stat().st_mtime)


def keep_csv_metrics(logger: CSVLogger, checkpoint: Path) -> None:
    """Start ``logger``'s log with its folder's ``metrics.csv`` rows up to ``checkpoint``'s epoch.

    CSVLogger deletes the ``metrics.csv`` of the folder it starts in; a resumed run would lose the
    learning curve of the epochs before the checkpoint. Rows of later epochs were logged after the
    checkpoint and are trained again; a row cut short by a kill is dropped.
    """
    path = Path(logger.log_dir) / "metrics.csv"
    if not path.is_file():
        return
    last_epoch, _ = _progress(checkpoint)
    with open(path, newline="", encoding="utf-8") as stream:
        rows = [row for row in csv.DictReader(stream)
                if None not in row and None not in row.values() and float(row.get("epoch") or 0) <= last_epoch]
    with warnings.catch_warnings():
        # "Previous log files in this directory will be deleted": they are carried over below
        warnings.filterwarnings("ignore", message="Experiment logs directory")
        writer = logger.experiment
    for row in rows:  # as written: the same text comes back
        step = row.pop("step")
        writer.log_metrics(row, step)
    logger.save()


def hold_run_folders(trainer: Trainer, subcommand: str, locks: contextlib.ExitStack) -> Path | None:
    """Take the single-writer locks of the folders this command writes, until ``locks`` closes.

    The run folder (``trainer.log_dir``) on rank 0 only: the other ranks are the same run. A fit
    also locks checkpoint folders outside it (a fixed ``dirpath``). The run folder is created at
    once, so that a command starting next to this one does not pick the same new version.

    Returns the run folder if this call created it (``None`` if it existed: a continued run).
    """
    log_dir = trainer.log_dir  # read on every rank, as Lightning asks (it broadcasts rank 0's)
    if log_dir is None or not trainer.is_global_zero:
        return None
    run_folder = Path(log_dir)
    folders = [run_folder]
    if subcommand == "fit":
        folders += [Path(callback.dirpath) for callback in trainer.checkpoint_callbacks
                    if callback.dirpath and not Path(callback.dirpath).resolve().is_relative_to(run_folder.resolve())]
    for folder in folders:
        locks.enter_context(exclusive_output(folder, what="run folder"))
    created = not run_folder.exists()
    run_folder.mkdir(parents=True, exist_ok=True)
    return run_folder if created else None


def remove_failed_run_folder(run_folder: Path | None) -> None:
    """Remove ``run_folder``, created by a command that failed, unless it holds a checkpoint or
    logged metrics.

    What a failed run wrote before its first checkpoint or metric (its config) is not a run to
    continue; a checkpoint is, and so is the metrics log of a run stopped after hours whose
    checkpoints go to a folder of their own (``ModelCheckpoint(dirpath=...)``): its folder stays.
    """
    if run_folder is None or not run_folder.is_dir() or any(run_folder.rglob("*.ckpt")) or _logged_metrics(run_folder):
        return
    shutil.rmtree(run_folder)
    _tell(f"removed {run_folder}: the command failed before writing a checkpoint or a metric")


def _logged_metrics(run_folder: Path) -> bool:
    """Whether a CSV metrics log in ``run_folder`` has a row below its header."""
    for path in run_folder.rglob("metrics.csv"):
        with open(path, encoding="utf-8") as file:
            if len(file.readlines()) > 1:
                return True
    return False


def keep_export_only_if_asked(trainer: Trainer, subcommand: str, export: bool) -> None:
    """``zoo test`` exports the tested model (the recipe's :class:`~zoo.callbacks.ExportPretrained`)
    only with ``--export``; without it the callback is dropped.

    Raises:
        ValueError: ``--export`` with another command than ``test``, or with a config that has no
            ``ExportPretrained`` (no model card to export with).
    """
    exporters = [callback for callback in trainer.callbacks if isinstance(callback, ExportPretrained)]
    if export and subcommand != "test":
        raise ValueError(f"--export writes the tested model after zoo test; zoo {subcommand} has no test to export")
    if export and not exporters:
        raise ValueError("--export needs the config's model card: add a zoo.callbacks.ExportPretrained callback "
                         "(card and split) to trainer.callbacks, as the recipes have")
    if subcommand == "test" and not export:
        trainer.callbacks = [callback for callback in trainer.callbacks if callback not in exporters]


class RunFolderLocks(contextlib.ExitStack):
    """The locks of the folders a command writes, held until the command ends.

    Lightning copies its trainer, and this CLI with it (through the config parser), when a callback
    copies the model (EMA's deepcopy) or the trainer goes to spawned processes (pickle). A lock
    belongs to the process that took it: a deep copy is the same object, a pickled one holds nothing.
    """

    def __deepcopy__(self, memo: dict) -> RunFolderLocks:
        return self

    def __reduce__(self) -> tuple:
        return RunFolderLocks, ()


class _NoAdverts(logging.Filter):
    """Drops Lightning's "💡 Tip" lines (a cloud logging service's advert): not about the user's run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_NoAdverts())
ignore_lightning_noise()


class ZooCLI(LightningCLI):
    """LightningCLI with resumable run folders, one writer per folder and atomic checkpoints.

    Takes :class:`~lightning.pytorch.cli.LightningCLI`'s arguments. Like it, it runs the command
    when created; the run folders' locks are released when the command ends, however it ends.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.continued_run_folder: Path | None = None
        self.created_run_folder: Path | None = None
        try:
            # warning filters a command sets (after_instantiate_classes) end with it
            with RunFolderLocks() as self.run_folder_locks, warnings.catch_warnings():
                super().__init__(*args, **kwargs)
        except BaseException:
            # after the locks are released; KeyboardInterrupt and SystemExit are failures too
            remove_failed_run_folder(self.created_run_folder)
            raise

    def add_arguments_to_parser(self, parser) -> None:
        # an overlay recipe names the recipe it varies: zoo.recipes.expand_config_arguments put that
        # before it, so the key is read and dropped (SUPPRESS keeps it out of --help and of config.yaml)
        parser.add_argument(f"--{recipes.BASE}", type=str | list[str] | None, default=None,
                            help=argparse.SUPPRESS)
        parser.add_argument("--export", action=ActionYesNo, default=False,
                            help="zoo test: write the tested model for the registry (the config's ExportPretrained: "
                                 "model card and test metrics), into the run folder unless the config names another")

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        # before Lightning reads the checkpoint's hyperparameters into the config (for `last` as for
        # a path) and before the logger exists: its version decides the run folder
        subcommand = self.config.get("subcommand")
        if subcommand is not None:
            self.continued_run_folder = resolve_checkpoint(subcommand, self.config[subcommand])

    def after_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        keep_export_only_if_asked(self.trainer, self.subcommand, self.config[self.subcommand].export)
        self.created_run_folder = hold_run_folders(self.trainer, self.subcommand, self.run_folder_locks)
        if self.subcommand != "fit":
            # testing a checkpoint of a time-limited fit: its Timer and its checkpoint folder's
            # bookkeeping (best scores) belong to training, nothing a test needs or the user can act on
            warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used to "
                                    r"create the checkpoint need to be provided.*\['Timer'\]")
            warnings.filterwarnings("ignore", message="The dirpath has changed from")
            return
        if type(self.trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # a configured one is kept
            self.trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        logger = self.trainer.logger
        if self.continued_run_folder is not None and isinstance(logger, CSVLogger) and self.trainer.is_global_zero:
            keep_csv_metrics(logger, Path(self.config.fit.ckpt_path))
