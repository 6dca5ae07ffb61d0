"""Small helpers shared by the readers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def existing_file(path, what: str) -> Path:
    """``path`` as a :class:`Path`, or a ``FileNotFoundError`` that says what was expected there."""
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    return path


def normalize_indices(indices, n: int | None, source: str) -> np.ndarray | None:
    """Integer positions as an int64 array, checked against ``n`` structures when ``n`` is known.

    Negative positions count from the end (like Python) when ``n`` is known. A string is a Python
    slice, ``"start:stop[:step]"`` (e.g. ``"0:160"`` in a YAML recipe), and needs ``n``.
    """
    if indices is None:
        return None
    if isinstance(indices, str):
        indices = _slice_positions(indices, n, source)
    array = np.asarray(indices)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{source}: indices must be integers, got dtype {array.dtype}")
    array = array.astype(np.int64).reshape(-1)
    if n is not None:
        bad = array[(array < -n) | (array >= n)]
        if bad.size:
            raise IndexError(f"{source}: indices {bad[:10].tolist()} out of range for {n} structures")
        array = np.where(array < 0, array + n, array)
    elif array.size and array.min() < 0:
        raise IndexError(f"{source}: negative indices are not supported here, got {array.min()}")
    return array


def _slice_positions(text: str, n: int | None, source: str) -> range:
    parts = text.split(":")
    try:
        if not 2 <= len(parts) <= 3:
            raise ValueError
        bounds = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise ValueError(f"{source}: indices {text!r} is not a slice 'start:stop[:step]' of integers") from None
    if n is None:
        raise ValueError(f"{source}: a slice of indices ({text!r}) needs the number of structures; give a list")
    return range(n)[slice(*bounds)]
