"""Readers: every supported source to an :class:`~zoo.data.AtomicDataset` with canonical keys and units.

========================  ==================================  ===========================
format                    files                               reader
========================  ==================================  ===========================
``qm9``                   ``qm9pack``'s CSVs (or ``.csv``)    :func:`read_qm9`
``md17`` / ``rmd17``      ``.npz``                            :func:`read_md17`
``ase`` / ``extxyz`` ...  ``.xyz``, ``.extxyz``, ``.db``, ...  :func:`read_ase`
``hamiltonian``           ``.h5``, ``.hdf5``                  :func:`read_hamiltonian_h5`
``qh9``                   QH9's SQLite ``.db``                :func:`~zoo.data.readers.qh9.read_qh9`
``schnorb``               SchNOrb's MD17 ASE ``.db``          :func:`~zoo.data.readers.schnorb.read_schnorb`
========================  ==================================  ===========================

QH9 and SchNOrb files share the ``.db`` extension with ASE databases: name their format.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.data.dataset import AtomicDataset
from zoo.data.readers.ase_io import read_ase
from zoo.data.readers._hamiltonian_metadata import HamiltonianMetadata
from zoo.data.readers.base_hamiltonians import append_base_hamiltonians, read_base_hamiltonians
from zoo.data.readers.hamiltonian import read_hamiltonian_h5, read_hamiltonian_metadata, write_hamiltonian_h5
from zoo.data.readers.md17 import read_md17
from zoo.data.readers.qm9 import QM9_PROPERTIES, read_qm9

def read_qh9(path, **kwargs) -> AtomicDataset:
    """QH9's SQLite files (imports PySCF, hence on first use only); see :mod:`zoo.data.readers.qh9`."""
    from zoo.data.readers.qh9 import read_qh9 as reader

    return reader(path, **kwargs)


def read_schnorb(path, **kwargs) -> AtomicDataset:
    """SchNOrb's MD17 Hamiltonian databases; see :mod:`zoo.data.readers.schnorb`."""
    from zoo.data.readers.schnorb import read_schnorb as reader

    return reader(path, **kwargs)


#: Format names -> reader. ASE format names not listed here (``"vasp-out"``, ...) go to
#: :func:`read_ase` when given explicitly as ``format``.
FORMATS = {
    "qm9": read_qm9,
    "md17": read_md17,
    "rmd17": read_md17,
    "npz": read_md17,
    "ase": read_ase,
    "extxyz": read_ase,
    "xyz": read_ase,
    "db": read_ase,
    "traj": read_ase,
    "hamiltonian": read_hamiltonian_h5,
    "h5": read_hamiltonian_h5,
    "hdf5": read_hamiltonian_h5,
    "qh9": read_qh9,
    "schnorb": read_schnorb,
}
#: File extensions -> format name.
EXTENSIONS = {
    ".csv": "qm9", ".npz": "md17", ".xyz": "extxyz", ".extxyz": "extxyz", ".db": "db", ".traj": "traj",
    ".h5": "hamiltonian", ".hdf5": "hamiltonian",
}
#: Format names that are also ASE format names, passed on to :func:`ase.io.read`.
_ASE_FORMATS = {"extxyz", "xyz", "db", "traj"}


def read_structures(path: str | os.PathLike, format: str | None = None, **kwargs) -> AtomicDataset:
    """Read any supported source, choosing the reader by ``format`` or by the file's extension.

    Args:
        path: a file, or ``"qm9"`` for the QM9 data of the ``qm9pack`` package.
        format: a name from :data:`FORMATS` (default: from the extension, see :data:`EXTENSIONS`).
        **kwargs: passed to the reader (``limit``, ``indices``, ``info_keys``, ``dtype``, ...).

    Example:
        >>> from zoo.data.readers import read_structures
        >>> len(read_structures("qm9", limit=5))
        5
    """
    name = os.fspath(path)
    if format is None:
        if name.lower() == "qm9" and not Path(name).exists():
            return read_qm9(**kwargs)
        format = EXTENSIONS.get(Path(name).suffix.lower())
        if format is None:
            raise ValueError(
                f"cannot tell the format of {name!r} from its extension; pass format= one of "
                f"{sorted(FORMATS)} (known extensions: {sorted(EXTENSIONS)})"
            )
    key = format.lower()
    if key == "qm9":
        return read_qm9(path=None if name.lower() == "qm9" and not Path(name).exists() else path, **kwargs)
    if key not in FORMATS:
        from ase.io.formats import ioformats

        if format in ioformats:  # any other format ASE knows, e.g. "vasp-out"
            return read_ase(path, format=format, **kwargs)
        raise ValueError(f"unknown format {format!r}; known formats: {sorted(FORMATS)}, "
                         "or any ase.io format name")
    reader = FORMATS[key]
    if reader is read_ase:
        return read_ase(path, format=key if key in _ASE_FORMATS else None, **kwargs)
    return reader(path, **kwargs)


__all__ = [
    "FORMATS", "EXTENSIONS", "read_structures", "read_qm9", "QM9_PROPERTIES", "read_md17", "read_ase", "read_qh9", "read_schnorb",
    "HamiltonianMetadata", "read_hamiltonian_h5", "read_hamiltonian_metadata", "write_hamiltonian_h5",
    "read_base_hamiltonians", "append_base_hamiltonians",
]
