"""The files of a data-generation run: structure files in, and the shards of a job array out."""

from __future__ import annotations

import os
from pathlib import Path


def read_structures(path: str | os.PathLike, index: str | int = ":") -> list:
    """Structures from any file :func:`ase.io.read` understands (xyz, extxyz, ...), as :class:`ase.Atoms` in Å.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: ASE cannot parse it.
    """
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no structure file at {path}")
    try:
        frames = ase.io.read(path, index=index)
    except Exception as error:  # ASE raises many kinds; the user needs the file name and the cause
        raise ValueError(f"cannot read structures from {path} with ase.io.read: {error}") from error
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise ValueError(f"{path} holds no structures")
    return frames


def check_shard(shard: tuple[int, int] | None) -> tuple[int, int] | None:
    """``shard`` as ``(i, n)``, job ``i`` of an ``n``-job array (or None: no sharding).

    Raises:
        ValueError: not ``0 <= i < n``.
    """
    if shard is None:
        return None
    i, n = (int(v) for v in shard)
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    return i, n


def shard_path(path: str | os.PathLike, shard: tuple[int, int] | None) -> Path:
    """``out.extxyz`` -> ``out.shard-2-of-8.extxyz`` (unchanged without sharding)."""
    path = Path(path)
    if shard is None:
        return path
    i, n = shard
    return path.with_name(f"{path.stem}.shard-{i}-of-{n}{path.suffix}")
