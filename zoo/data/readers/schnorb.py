"""SchNOrb's MD17 Hamiltonians (Schütt et al. 2019; also QHNet's "MD17" benchmark), ASE databases.

Files ``schnorb_hamiltonian_{water,ethanol_dft,malondialdehyde,uracil}.db`` from
quantum-machine.org: one ASE-database row per MD frame, positions in Å, and in ``row.data``:

* ``hamiltonian``, ``overlap``: [n_ao, n_ao], Hartree, from **ORCA** (PBE/def2-SVP), so in ORCA's
  AO order (m = 0, +1, −1, ..., p = (pz, px, py)); converted to PySCF order on entry.
* ``energy`` (Hartree, minus the dataset mean stored as ``metadata["mean_energy"]`` when SchNOrb's
  ``extract_data.py`` wrote it) and ``forces`` (Hartree/Å: ORCA's gradient times −1/Bohr).

SchNetPack 0.3 stored arrays base64-encoded next to ``_shape_<name>`` and ``_dtype_<name>``
entries; both that and plain arrays are read. ``metadata["basisdef"]``, SchNOrb's per-element
list of (index, type, n, l, m) in ORCA order, is checked against PySCF's shells when present.

The matrices are ORCA's, not PySCF's: ORCA's grids (and its RI-J default for GGAs) differ from
any PySCF setting, so the recorded level (:data:`SCHNORB_LEVEL`) has ``code="orca"`` and no PySCF
grid, and a model trained on them is not interchangeable with PySCF-labelled data. The nearest
PySCF level, e.g. for self-consistency targets, is
``dataclasses.replace(SCHNORB_LEVEL, code="pyscf", grid_level=3)``.
"""

from __future__ import annotations

import os
from base64 import b64decode
from collections.abc import Sequence

import numpy as np

from zoo.data import keys
from zoo.data._atomic_data import AtomicData
from zoo.data.dataset import AtomicDataset, check_consistent_keys, resolve_dtype
from zoo.data.elements import as_atomic_numbers
from zoo.data.readers._common import existing_file, normalize_indices
from zoo.data.readers._hamiltonian_metadata import HamiltonianMetadata
from zoo.data.units import HARTREE
from zoo.qc import ao
from zoo.qc.level import LevelOfTheory

#: SchNOrb's level of theory: ORCA's PBE/def2-SVP, on ORCA's own grid.
SCHNORB_LEVEL = LevelOfTheory(method="rks", xc="pbe", basis="def2-svp", grid_level=None, code="orca")


def schnorb_metadata() -> HamiltonianMetadata:
    """SchNOrb's level of theory as Hamiltonian metadata (matrices converted to PySCF order)."""
    return HamiltonianMetadata(SCHNORB_LEVEL, pyscf_version="none (ORCA)")


def read_schnorb(
    path: str | os.PathLike,
    indices: Sequence[int] | None = None,
    dtype=None,
) -> AtomicDataset:
    """Read a SchNOrb Hamiltonian ASE database, converting ORCA AO order to PySCF's.

    Args:
        path: the ``.db`` file.
        indices: rows to read (0-based, in id order), in the order given; default all.
        dtype: floating dtype (default: torch's default); the files hold float32 matrices.

    Returns:
        An :class:`AtomicDataset` with ``z``, ``pos`` (Å), ``hamiltonian`` and ``overlap``
        (flattened, Hartree, PySCF order), ``n_ao``, ``n_electrons``, and ``energy`` (eV, total
        when the file records its mean) and ``forces`` (eV/Å) when present.
    """
    from ase.db import connect

    path = existing_file(path, "SchNOrb ASE database (.db)")
    dtype = resolve_dtype(dtype)
    try:
        database = connect(str(path), type="db")
        rows = list(database.select(sort="id"))
        file_metadata = database.metadata
    except Exception as error:  # ASE raises sqlite3 and its own errors for foreign files
        raise ValueError(f"cannot read {path} as an ASE database ({error}); expected a SchNOrb .db file") from error
    if "basisdef" in file_metadata:
        elements = {int(z) for row in rows for z in row.numbers}
        _check_basis_definition(np.asarray(file_metadata["basisdef"]), elements, path)
    mean_energy = float(file_metadata.get("mean_energy", 0.0))
    selected = normalize_indices(indices, len(rows), str(path))
    selected = range(len(rows)) if selected is None else selected.tolist()
    data = [_structure(rows[i], mean_energy, f"{path} row id {rows[i].id}", dtype) for i in selected]
    check_consistent_keys(data, str(path))
    return AtomicDataset(data, metadata={
        "source": str(path), "format": "schnorb", "hamiltonian": schnorb_metadata(),
        "mean_energy_hartree": mean_energy,
        "units": {"matrices": "hartree", keys.ENERGY: "eV", keys.FORCES: "eV/Å"},
    })


def _structure(row, mean_energy: float, where: str, dtype) -> AtomicData:
    try:
        return _parse_row(row, mean_energy, dtype)
    except (ValueError, TypeError) as error:  # TypeError: an entry of another type than SchNOrb's
        raise ValueError(f"{where}: {error}") from error


def _parse_row(row, mean_energy: float, dtype) -> AtomicData:
    z = as_atomic_numbers(row.numbers).numpy()
    basis = SCHNORB_LEVEL.basis
    n_ao = int(ao.ao_offsets(z, basis)[-1])
    properties = {keys.N_AO: n_ao, keys.N_ELECTRONS: int(z.sum())}
    for name, key in (("hamiltonian", keys.HAMILTONIAN), ("overlap", keys.OVERLAP)):
        matrix = _array(row.data, name).astype(np.float64)
        if matrix.shape != (n_ao, n_ao):
            raise ValueError(f"{name} has shape {matrix.shape}, expected ({n_ao}, {n_ao}) for def2-SVP")
        properties[key] = ao.orca_to_pyscf(matrix, z, basis)
    if "energy" in row.data:
        energy = _array(row.data, "energy")
        if energy.size != 1:
            raise ValueError(f"energy has shape {energy.shape}, expected one number")
        properties[keys.ENERGY] = (float(energy.item()) + mean_energy) * HARTREE
    if "forces" in row.data:
        forces = _array(row.data, "forces")
        if forces.size != 3 * len(z):
            raise ValueError(f"forces has shape {forces.shape}, expected ({len(z)}, 3)")
        properties[keys.FORCES] = forces.reshape(len(z), 3) * HARTREE
    return AtomicData.from_arrays(z, np.array(row.positions), dtype=dtype, **properties)


def _array(data, name: str) -> np.ndarray:
    """``data[name]`` as an array: plain, or SchNetPack 0.3's base64 with shape and dtype entries."""
    if name not in data:
        raise ValueError(f"row data lacks {name!r}; it has {sorted(data)}")
    value = data[name]
    if isinstance(value, (str, bytes)):
        shape, dtype = data.get(f"_shape_{name}"), data.get(f"_dtype_{name}")
        if shape is None or dtype is None:
            raise ValueError(f"{name!r} is encoded but _shape_{name}/_dtype_{name} are missing")
        try:
            return np.frombuffer(b64decode(value), dtype=str(dtype)).reshape(tuple(shape)).copy()
        except (ValueError, TypeError) as error:  # binascii.Error is a ValueError
            raise ValueError(f"{name!r} is not base64 {dtype} data of shape {tuple(shape)} ({error})") from error
    return np.array(value)


def _check_basis_definition(basisdef: np.ndarray, elements: set[int], path) -> None:
    """SchNOrb's per-element (idx, type, n, l, m) rows must match PySCF's shells in ORCA order."""
    for z in sorted(elements):
        found = basisdef[z][basisdef[z][:, 2] > 0][:, 3:5].tolist() if z < len(basisdef) else []
        expected = [
            [l, m]
            for l, n_contractions in ao.shells(SCHNORB_LEVEL.basis, z)
            for _ in range(n_contractions)
            for m in ao.orca_m_order(l)
        ]
        if found != expected:
            raise ValueError(
                f"{path}: the file's basis definition for Z={z} (l, m per AO: {found}) is not PySCF's "
                f"def2-SVP in ORCA order ({expected}); the AO conversion would be wrong"
            )
