"""The failure log of a run: one JSON line per structure that could not be made or labelled.

``zoo label`` and ``zoo sample-qm9`` record each failure as soon as it comes back, with the
settings that failed it, and never write such a structure to their outputs. A rerun reads the
log to skip what failed at its own settings. :func:`record` is the one writer: each line is
appended and flushed to disk at once, so a killed run loses at most the line it was writing:
:func:`entries` skips it, and the next entry starts a line of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def failures_path(out: str | os.PathLike) -> Path:
    """The failure log next to an output file: ``out.failures.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.failures.jsonl")


def record(path: str | os.PathLike, entry: dict) -> None:
    """Append ``entry`` to the log at ``path`` as one JSON line, on disk when this returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry) + "\n").encode()
    with open(path, "ab+") as stream:
        if stream.seek(0, os.SEEK_END) > 0:
            stream.seek(-1, os.SEEK_END)
            if stream.read(1) != b"\n":  # a line torn by a killed run: end it, or this entry would join it
                line = b"\n" + line
        stream.write(line)
        stream.flush()
        os.fsync(stream.fileno())


def entries(path: str | os.PathLike) -> list[dict]:
    """The entries of the log at ``path`` (none if there is no log); a torn line (killed mid-write) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    found = []
    for line in path.read_text().splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def merge(inputs: Sequence[str | os.PathLike], out: str | os.PathLike) -> None:
    """Join the logs next to ``inputs`` (e.g. the shards of a job array) into the log next to ``out``."""
    lines = [line for path in inputs if failures_path(path).is_file()
             for line in failures_path(path).read_text().splitlines() if line.strip()]
    if lines:
        failures_path(out).write_text("\n".join(lines) + "\n")
