"""QH9 (Yu et al., NeurIPS 2023 datasets track): Hamiltonians of QM9 molecules, SQLite files.

The raw ``.db`` files of the QH9 release (``QH9Stable.db``, ``QH9Dynamic_100k.db``,
``QH9Dynamic_300k.db``) hold one table ``data``, read by column position as QH9's own loader
(``QH9/datasets.py``) does:

* QH9-stable, 5 columns ``(id, N, Z, pos, Ham)``: positions in **Å** (QM9's geometries).
* QH9-dynamic, 11 columns ``(id, geo_id, N, Z, pos, ekin, epot, etot, time, Ham, converged)``:
  MD frames, positions in **Bohr** (PySCF's ``atom_coords()``), ``id`` possibly as int64 bytes,
  energies in Hartree.

``Z`` is an integer blob (int32 in the release), ``pos`` and ``Ham`` float64 blobs. ``Ham`` is
``mf.get_fock()`` of a converged PySCF RKS, so it is already in PySCF AO order. The functional
was PySCF's ``xc="b3lyp"`` before PySCF 2.3, i.e. the VWN5 variant, ``"b3lyp5"`` today; basis
def2-SVP; PySCF's default grid (level 3); no density fitting. QH9 stores no overlap matrix; pass
``overlap=True`` to compute it with PySCF (cheap, analytic).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from contextlib import closing

import numpy as np

from zoo.data import keys
from zoo.data._atomic_data import AtomicData
from zoo.data.dataset import AtomicDataset, check_consistent_keys, resolve_dtype
from zoo.data.elements import as_atomic_numbers
from zoo.data.readers._common import existing_file, normalize_indices
from zoo.data.readers._hamiltonian_metadata import HamiltonianMetadata
from zoo.data.units import BOHR, HARTREE
from zoo.qc import ao
from zoo.qc.level import LevelOfTheory

#: The level of theory of every QH9 Hamiltonian.
QH9_LEVEL = LevelOfTheory(method="rks", xc="b3lyp5", basis="def2-svp", grid_level=3)
#: Column positions per variant: (n_columns, n_atoms, atomic numbers, positions, Hamiltonian, epot or None).
_LAYOUTS = {
    "stable": (5, 1, 2, 3, 4, None),
    "dynamic": (11, 2, 3, 4, 9, 6),
}
_POSITION_UNIT = {"stable": 1.0, "dynamic": BOHR}


def qh9_metadata() -> HamiltonianMetadata:
    """QH9's level of theory as the zoo's Hamiltonian metadata (PySCF AO order)."""
    return HamiltonianMetadata(QH9_LEVEL, pyscf_version="<2.3 (QH9 release)")


def read_qh9(
    path: str | os.PathLike,
    indices: Sequence[int] | None = None,
    overlap: bool = False,
    dtype=None,
) -> AtomicDataset:
    """Read a QH9 SQLite file (stable or dynamic, recognised from its columns).

    Args:
        path: the ``.db`` file.
        indices: rows to read (0-based, in table order), in the order given; default all.
        overlap: also compute each overlap matrix with PySCF (def2-SVP).
        dtype: floating dtype (default: torch's default); use float64 to keep µEh precision.

    Returns:
        An :class:`AtomicDataset` with ``z``, ``pos`` (Å), ``hamiltonian`` (flattened, Hartree,
        PySCF order), ``n_ao``, ``n_electrons``, ``energy`` (eV, dynamic only; the MD potential
        energy) and ``overlap`` when asked. ``metadata["hamiltonian"]`` is :func:`qh9_metadata`,
        whose ``level`` is :data:`QH9_LEVEL`.
    """
    path = existing_file(path, "QH9 SQLite (.db)")
    dtype = resolve_dtype(dtype)
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        try:
            columns = [row[1] for row in connection.execute("PRAGMA table_info(data)")]
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{path} is not an SQLite database ({error}); expected a QH9 .db file") from error
        variant = next((name for name, layout in _LAYOUTS.items() if layout[0] == len(columns)), None)
        if variant is None:
            raise ValueError(
                f"{path}: table 'data' has columns {columns}; expected QH9-stable's 5 "
                "(id, N, Z, pos, Ham) or QH9-dynamic's 11 "
                "(id, geo_id, N, Z, pos, ekin, epot, etot, time, Ham, converged)"
            )
        rows = connection.execute("SELECT * FROM data ORDER BY rowid").fetchall()
    selected = normalize_indices(indices, len(rows), str(path))
    selected = range(len(rows)) if selected is None else selected.tolist()
    data = [_structure(rows[i], variant, f"{path} row {i}", overlap, dtype) for i in selected]
    check_consistent_keys(data, str(path))
    return AtomicDataset(data, metadata={
        "source": str(path), "format": f"qh9-{variant}", "hamiltonian": qh9_metadata(),
        "units": {"matrices": "hartree", keys.ENERGY: "eV"},
    })


def _structure(row, variant: str, where: str, overlap: bool, dtype) -> AtomicData:
    try:
        return _parse_row(row, variant, overlap, dtype)
    except (ValueError, TypeError) as error:  # TypeError: a column of another type than QH9's
        raise ValueError(f"{where}: {error}") from error


def _parse_row(row, variant: str, overlap: bool, dtype) -> AtomicData:
    _, n_col, z_col, pos_col, ham_col, epot_col = _LAYOUTS[variant]
    n_atoms = int(row[n_col])
    z = as_atomic_numbers(_integers(row[z_col], n_atoms)).numpy()
    positions = np.frombuffer(row[pos_col], dtype=np.float64)
    if positions.size != 3 * n_atoms:
        raise ValueError(f"pos holds {positions.size} numbers, expected {3 * n_atoms} for {n_atoms} atoms")
    positions = positions.reshape(n_atoms, 3) * _POSITION_UNIT[variant]
    n_ao = int(ao.ao_offsets(z, QH9_LEVEL.basis)[-1])
    hamiltonian = np.frombuffer(row[ham_col], dtype=np.float64).copy()
    if hamiltonian.size != n_ao * n_ao:
        raise ValueError(f"Ham holds {hamiltonian.size} numbers, expected {n_ao}² for def2-SVP")
    properties = {keys.HAMILTONIAN: hamiltonian, keys.N_AO: n_ao, keys.N_ELECTRONS: int(z.sum())}
    if epot_col is not None:
        properties[keys.ENERGY] = float(row[epot_col]) * HARTREE
    if overlap:
        properties[keys.OVERLAP] = QH9_LEVEL.build_mole(z, positions).intor("int1e_ovlp")
    return AtomicData.from_arrays(z, positions, dtype=dtype, **properties)


def _integers(blob, n_atoms: int) -> np.ndarray:
    """Atomic numbers from a blob of int32 (QH9's release) or int64 values."""
    for integer in (np.int32, np.int64):
        if len(blob) == n_atoms * np.dtype(integer).itemsize:
            return np.frombuffer(blob, dtype=integer).astype(np.int64)
    raise ValueError(f"Z has {len(blob)} bytes, not {n_atoms} int32 or int64 values")
