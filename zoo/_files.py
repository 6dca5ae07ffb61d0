"""Writing files safely: atomically, and by one writer at a time.

Every file zoo writes goes through these two helpers, so that a run killed at any moment leaves
either the old file or the new one (never half of one), and two runs pointed at the same output
do not interleave their writes:

- :func:`atomic_path` yields a private temporary path next to the target and moves it over the
  target (:func:`os.replace`, after an ``fsync``) only when the block finishes without error;
- :func:`exclusive_output` holds an OS file lock (``filelock``) on ``<output>.lock`` for the
  life of a run. A second writer fails at once with :class:`OutputBusyError`, naming the holder
  (host, pid, command, start time). The lock is the kernel's, so a writer killed with ``kill -9``
  releases it: a stale lock file is simply taken over by the next run, which also removes the
  temporary files such a writer left (``.<output>.*.tmp``). The empty lock file stays beside
  the output.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "labels.txt"
    >>> with exclusive_output(out):
    ...     with atomic_path(out) as tmp:
    ...         _ = tmp.write_text("done")
    >>> out.read_text()
    'done'
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import FileLock, Timeout


class OutputBusyError(RuntimeError):
    """Another process is writing the same output."""


def _holder_file(lock: Path) -> Path:
    # filelock truncates the lock file when a contender opens it, so the holder is recorded beside it
    return lock.with_name(lock.name + ".holder")


def _describe_holder(lock: Path) -> str:
    try:
        holder = json.loads(_holder_file(lock).read_text(encoding="utf-8"))
        return (f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: "
                f"{holder['command']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that did not record itself"


@contextlib.contextmanager
def exclusive_output(output: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Hold the single-writer lock of ``output`` (a file or folder) for the block.

    Raises :class:`OutputBusyError` at once if another live process holds it. A lock left behind
    by a killed process is free again (the kernel released it), so the next run takes it over.
    """
    output = Path(os.fspath(output)).expanduser()
    lock_path = output.with_name(output.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputBusyError(
            f"{output} is being written by another run ({_describe_holder(lock_path)}). Wait for it to "
            f"finish, stop it, or write to another {what}; two writers of one {what} would corrupt it"
        ) from None
    # whoever wrote these is gone (the lock is ours): a writer killed between writing its
    # temporary copy and moving it over the output (atomic_path's, or write_extxyz's)
    for leftover in output.parent.glob(f".{glob.escape(output.name)}.*.tmp"):
        leftover.unlink(missing_ok=True)
    holder = _holder_file(lock_path)
    try:
        holder.write_text(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv) or sys.executable,
        }), encoding="utf-8")
        yield output
    finally:
        holder.unlink(missing_ok=True)
        # the lock file stays: deleting it would let a contender that opened it lock a dead inode
        lock.release()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, copy_existing: bool = False) -> Iterator[Path]:
    """A private temporary path that replaces ``path`` when the block ends without error.

    Args:
        path: the file to write.
        copy_existing: start the temporary file as a copy of ``path`` (to append to it).

    The temporary file sits in the same folder (so the final :func:`os.replace` is atomic), is
    named after the writing process, and is removed if the block raises.
    """
    path = Path(os.fspath(path)).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if copy_existing and path.exists():
            shutil.copyfile(path, tmp)
        yield tmp
        with open(tmp, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def append_json_record(path: str | os.PathLike, record: dict,
                       replaces: Callable[[dict], bool] | None = None) -> list[dict]:
    """Append ``record`` to the JSON list in ``path`` (created if missing); returns the list.

    Several processes may append to one file (a study's runs on several cores): each reads the
    list under ``<path>.lock``, so none loses another's record, and replaces it atomically.
    ``replaces`` picks the records the new one stands for (a run redone): they are dropped in
    the same step.
    """
    path = Path(os.fspath(path))
    with FileLock(f"{path}.lock"), atomic_path(path) as tmp:
        records = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        records = [r for r in records if replaces is None or not replaces(r)] + [record]
        tmp.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return records
