"""A file of base Hamiltonians (``HamiltonianModel(base=...)``), kept from one training run to the next.

A fit of a model with a base computes one PySCF Fock build per training and validation structure
before its first step: seconds each, most of an hour for a thousand molecules, again in every
resumed run, seed and control. ``HamiltonianTask(base_file=...)`` keeps them here instead.

Layout (``format_version`` 1)::

    /              attrs: format="zoo-base-hamiltonians", format_version=1, base (e.g. "minao_fock"),
                          the level of theory and conventions as in a zoo Hamiltonian file
    /bases/000000  atomic_numbers [n_atoms] int64
                   positions      [n_atoms, 3] float64, Å (the exact coordinates: they are the key)
                   matrix         [n_ao, n_ao] float64, Hartree, PySCF AO order
    /bases/000001  ...

A file of another base or level of theory is refused, never used: a label file given here by
mistake would hand the model the answer as its base.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from zoo.data.readers._hamiltonian_metadata import FORMAT as HAMILTONIAN_FORMAT
from zoo.data.readers._hamiltonian_metadata import FORMAT_VERSION as HAMILTONIAN_FORMAT_VERSION
from zoo.data.readers._hamiltonian_metadata import HamiltonianMetadata

FORMAT = "zoo-base-hamiltonians"
FORMAT_VERSION = 1
GROUP = "bases"


def read_base_hamiltonians(path: str | os.PathLike, base: str,
                           metadata: HamiltonianMetadata) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(atomic_numbers, positions Å, matrix)`` of every base Hamiltonian in ``path``; ``[]`` without a file.

    Raises:
        ValueError: not a base-Hamiltonian file, or one of another base or level of theory.
    """
    import h5py

    path = Path(os.fspath(path))
    if not path.exists():
        return []
    with h5py.File(path, "r") as handle:
        _check_header(handle.attrs, path, base, metadata)
        return [(group["atomic_numbers"][()].astype(np.int64), group["positions"][()].astype(np.float64),
                 group["matrix"][()].astype(np.float64)) for _, group in sorted(handle[GROUP].items())]


def _check_header(attrs, path: Path, base: str, metadata: HamiltonianMetadata) -> None:
    attrs = dict(attrs)
    if attrs.get("format") != FORMAT:
        raise ValueError(f"{path} is not a file of base Hamiltonians (its 'format' attribute is "
                         f"{attrs.get('format')!r}, expected {FORMAT!r}); give base_file a path of its own")
    if int(attrs.get("format_version", -1)) != FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {attrs.get('format_version')!r}; this zoo reads "
                         f"version {FORMAT_VERSION}")
    stored = attrs.get("base")
    stored = stored.decode() if isinstance(stored, bytes) else stored
    if stored != base:
        raise ValueError(f"{path} holds base Hamiltonians {stored!r}, not {base!r}: give base_file another path")
    try:
        metadata.check_compatible(HamiltonianMetadata.from_attrs(
            {**attrs, "format": HAMILTONIAN_FORMAT, "format_version": HAMILTONIAN_FORMAT_VERSION}, str(path)))
    except ValueError as error:
        raise ValueError(f"{path} holds base Hamiltonians at another level of theory: {error}") from None


def append_base_hamiltonians(path: str | os.PathLike, base: str, metadata: HamiltonianMetadata,
                             entries: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> int:
    """Add ``(atomic_numbers, positions Å, matrix)`` entries to ``path`` (made if missing), atomically
    and as its only writer; returns how many the file then holds."""
    import h5py

    from zoo._files import atomic_path, exclusive_output

    entries = list(entries)
    with exclusive_output(path, "base Hamiltonian file") as path:
        with atomic_path(path, copy_existing=True) as work, h5py.File(work, "a") as handle:
            if handle.attrs:
                _check_header(handle.attrs, path, base, metadata)  # the same base and level, or an error
            else:
                handle.attrs.update({**metadata.to_attrs(), "format": FORMAT, "format_version": FORMAT_VERSION,
                                     "base": base})
            group = handle.require_group(GROUP)
            start = len(group)
            for number, (z, positions, matrix) in enumerate(entries, start):
                item = group.create_group(f"{number:06d}")
                item["atomic_numbers"] = np.asarray(z, dtype=np.int64)
                item["positions"] = np.asarray(positions, dtype=np.float64)
                item["matrix"] = np.asarray(matrix, dtype=np.float64)
            return len(group)
