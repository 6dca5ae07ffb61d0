"""zoo's own Hamiltonian dataset format: HDF5 with the level of theory in the file's attributes.

Layout (``format_version`` 1)::

    /                      attrs: format="zoo-hamiltonian", format_version=1, xc, basis,
                                  grid_level, density_fitting, pyscf_version, ao_convention,
                                  units="hartree", charge, spin, and code when not "pyscf"
    /structures/000000     atomic_numbers [n_atoms] int64
                           positions      [n_atoms, 3] Å
                           hamiltonian    [n_ao, n_ao] Hartree   (each of these four optional)
                           overlap        [n_ao, n_ao]
                           density_matrix [n_ao, n_ao]
                           orbital_energies [n_ao] Hartree
                           energy         [] eV                  (optional)
                           forces         [n_atoms, 3] eV/Å      (optional)
    /structures/000001     ...

Matrices are stored as float64, unflattened, in the AO order named by ``ao_convention``. The
attributes are a :class:`HamiltonianMetadata` (:mod:`zoo.data.readers._hamiltonian_metadata`): the
level of theory, spelled flat, and the conventions. Data made at one level of theory (xc, basis,
grid, ...) cannot train or evaluate a model made at another:
:meth:`HamiltonianMetadata.check_compatible` turns such a mix into an error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from zoo.data import keys
from zoo.data._atomic_data import AtomicData, require_finite
from zoo.data.dataset import AtomicDataset, check_consistent_keys, resolve_dtype
from zoo.data.elements import as_atomic_numbers
from zoo.data.readers._common import existing_file, normalize_indices
from zoo.data.readers._hamiltonian_metadata import FORMAT, HamiltonianMetadata

GROUP = "structures"

#: Dataset names in a structure group -> canonical keys.
DATASETS = {
    "atomic_numbers": keys.ATOMIC_NUMBERS,
    "positions": keys.POSITIONS,
    "hamiltonian": keys.HAMILTONIAN,
    "overlap": keys.OVERLAP,
    "density_matrix": keys.DENSITY_MATRIX,
    "orbital_energies": keys.ORBITAL_ENERGIES,
    "energy": keys.ENERGY,
    "forces": keys.FORCES,
}
_MATRICES = ("hamiltonian", "overlap", "density_matrix")
_OPTIONAL = tuple(name for name in DATASETS if name not in ("atomic_numbers", "positions"))
#: Keys of an AtomicData record that the file derives rather than stores.
_DERIVED = {keys.N_ATOMS, keys.N_AO, keys.N_ELECTRONS, keys.EDGE_INDEX, keys.EDGE_CELL_SHIFT}


def read_hamiltonian_metadata(path: str | os.PathLike) -> HamiltonianMetadata:
    """The validated metadata of a Hamiltonian file, without reading its structures."""
    path = existing_file(path, "Hamiltonian HDF5")
    with _open(path) as handle, _damaged_file(path):
        attrs = dict(handle.attrs)
    return HamiltonianMetadata.from_attrs(attrs, str(path))


def write_hamiltonian_h5(
    path: str | os.PathLike,
    records: Iterable[Mapping | AtomicData],
    metadata: HamiltonianMetadata,
    append: bool = False,
    overwrite: bool = False,
) -> int:
    """Write structures and their matrices to ``path``, atomically.

    The file is written to ``path + ".tmp"`` and moved over ``path`` with :func:`os.replace`, so
    an interrupted run never leaves a half-written file. Appending copies the existing file
    first (linear in its size): resumable labelling appends one batch at a time.

    Args:
        path: the HDF5 file.
        records: one mapping per structure with ``atomic_numbers`` (or ``z``) and ``positions``
            (or ``pos``), Å, plus any of ``hamiltonian``, ``overlap``, ``density_matrix``
            ([n_ao, n_ao], or flattened), ``orbital_energies`` ([n_ao]), ``energy`` (eV) and
            ``forces`` (eV/Å); or an :class:`AtomicData` with canonical keys.
        metadata: the level of theory the matrices were computed at.
        append: add to an existing file, whose metadata must equal ``metadata`` (PySCF version
            included); creates the file if it does not exist.
        overwrite: replace an existing file (without it, writing over one is an error).

    Returns:
        The number of structures in the file after writing.
    """
    import h5py

    if not isinstance(metadata, HamiltonianMetadata):
        raise TypeError(f"metadata must be a HamiltonianMetadata, got {type(metadata).__name__}")
    path = Path(os.fspath(path)).expanduser()
    arrays = [_record_arrays(record, i) for i, record in enumerate(records)]
    exists = path.exists()
    if exists and not append and not overwrite:
        raise FileExistsError(f"{path} exists; pass append=True to add structures or overwrite=True to replace it")
    tmp = Path(str(path) + ".tmp")
    try:
        if append and exists:
            existing = read_hamiltonian_metadata(path)
            try:
                existing.check_compatible(metadata, ignore=())
            except ValueError as error:
                raise ValueError(f"cannot append to {path}: {error}") from error
            shutil.copyfile(path, tmp)
            mode = "a"
        else:
            mode = "w"
        with h5py.File(tmp, mode) as handle:
            if mode == "w":
                handle.attrs.update(metadata.to_attrs())
            group = handle.require_group(GROUP)
            start = len(group)
            for offset, record in enumerate(arrays):
                item = group.create_group(f"{start + offset:06d}")
                for name, value in record.items():
                    item.create_dataset(name, data=value)
            total = len(group)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return total


def read_hamiltonian_h5(
    path: str | os.PathLike,
    indices: Sequence[int] | None = None,
    expect: HamiltonianMetadata | None = None,
    properties: Sequence[str] | None = None,
    dtype=None,
) -> AtomicDataset:
    """Read a Hamiltonian file into AtomicData with flattened AO matrices.

    Each structure gets :data:`keys.N_AO` and :data:`keys.N_ELECTRONS` (sum of Z minus the
    charge) besides what the file holds. Matrices keep full precision only with
    ``dtype=torch.float64``: float32 rounds Fock entries of ~10 Hartree by ~1 µEh.

    Args:
        path: the HDF5 file.
        indices: structures to read (0-based), in the order given; default all.
        expect: the level of theory the caller needs (e.g. a model's); any mismatch with the
            file's is a ``ValueError`` naming the fields (the PySCF version may differ).
        properties: dataset names to read besides atomic numbers and positions (default: all
            present); a named one missing from some structure is an error.
        dtype: floating dtype (default: torch's default).

    Returns:
        An :class:`AtomicDataset` whose ``metadata["hamiltonian"]`` is the file's
        :class:`HamiltonianMetadata`.
    """
    import h5py

    path = existing_file(path, "Hamiltonian HDF5")
    dtype = resolve_dtype(dtype)
    if properties is not None:
        unknown = [p for p in properties if p not in _OPTIONAL]
        if unknown:
            raise ValueError(f"unknown Hamiltonian properties {unknown}; known: {list(_OPTIONAL)}")
    with _open(path) as handle:
        with _damaged_file(path):
            attrs = dict(handle.attrs)
            group = handle.get(GROUP)
            names = sorted(group) if isinstance(group, h5py.Group) else []
        metadata = HamiltonianMetadata.from_attrs(attrs, str(path))
        if expect is not None:
            try:
                expect.check_compatible(metadata)
            except ValueError as error:
                raise ValueError(f"{path} was made at another level of theory than expected: {error}") from error
        if not isinstance(group, h5py.Group):
            raise ValueError(f"{path} has no '{GROUP}' group; it is not a complete zoo Hamiltonian file")
        foreign = [name for name in names if not name.isdigit()]
        if foreign:
            raise ValueError(f"{path}: '{GROUP}' holds {foreign[:5]}, not structures numbered 000000, 000001, ...; "
                             "write the file with zoo.data.readers.write_hamiltonian_h5")
        names.sort(key=int)
        selected = normalize_indices(indices, len(names), str(path))
        selected = range(len(names)) if selected is None else selected.tolist()
        data = []
        for i in selected:
            where = f"{path}:{GROUP}/{names[i]}"
            with _damaged_file(where):
                item = group[names[i]]
            data.append(_read_structure(item, where, metadata, properties, dtype))
    check_consistent_keys(data, str(path))
    return AtomicDataset(data, metadata={
        "source": str(path), "format": FORMAT, "hamiltonian": metadata,
        "units": {"matrices": "hartree", keys.ENERGY: "eV", keys.FORCES: "eV/Å"},
    })


def _open(path: Path):
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"cannot open {path} as HDF5 ({error}); expected a zoo Hamiltonian file "
                         f"(format {FORMAT!r})") from error


@contextmanager
def _damaged_file(where):
    """h5py's errors on a damaged (truncated or overwritten) file as a ``ValueError`` naming it.

    A damaged file opens, and then fails on some attribute, group or dataset with any of
    KeyError, RuntimeError, OSError, TypeError or ValueError: wrap reading only, not checking.
    """
    try:
        yield
    except (KeyError, RuntimeError, OSError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: cannot read it, the HDF5 file is damaged ({error}); write it again "
                         "or restore a copy") from error


def _read_structure(item, where: str, metadata: HamiltonianMetadata, properties, dtype) -> AtomicData:
    import h5py

    if not isinstance(item, h5py.Group):
        raise ValueError(f"{where} is not a group of datasets; the file was not written by zoo")
    with _damaged_file(where):
        present = set(item)
    missing = [name for name in ("atomic_numbers", "positions") if name not in present]
    if missing:
        raise ValueError(f"{where} lacks {missing}")
    wanted = [name for name in _OPTIONAL if name in present] if properties is None else list(properties)
    absent = [name for name in wanted if name not in present]
    if absent:
        raise ValueError(f"{where} lacks {absent}; it has {sorted(present)}")
    with _damaged_file(where):
        raw = {name: item[name][()] for name in wanted}
        z, positions = item["atomic_numbers"][()], item["positions"][()]
    values = {DATASETS[name]: value for name, value in raw.items()}
    n_ao = _n_ao(raw, where)
    if n_ao is not None:
        values[keys.N_AO] = n_ao
    try:
        z = as_atomic_numbers(z)
        values[keys.N_ELECTRONS] = int(z.sum()) - metadata.level.charge
        return AtomicData.from_arrays(z, positions, dtype=dtype, **values)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error


def _n_ao(arrays: Mapping[str, np.ndarray], where: str) -> int | None:
    """The common AO count of the matrices and orbital energies, checking that they agree."""
    sizes = {}
    for name in _MATRICES:
        if name in arrays:
            matrix = np.asarray(arrays[name])
            if matrix.ndim == 1:
                n = int(round(np.sqrt(matrix.size)))
                if n * n != matrix.size:
                    raise ValueError(f"{where}: flattened {name} has {matrix.size} entries, not a square number")
            elif matrix.ndim == 2 and matrix.shape[0] == matrix.shape[1]:
                n = matrix.shape[0]
            else:
                raise ValueError(f"{where}: {name} has shape {matrix.shape}; expected [n_ao, n_ao]")
            sizes[name] = n
    if "orbital_energies" in arrays:
        energies = np.asarray(arrays["orbital_energies"])
        if energies.ndim != 1:
            raise ValueError(f"{where}: orbital_energies has shape {energies.shape}; expected [n_ao]")
        sizes["orbital_energies"] = energies.size
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{where}: AO dimensions disagree: {sizes}")
    return next(iter(sizes.values()), None)


def _record_arrays(record, number: int) -> dict[str, np.ndarray]:
    """A record as validated numpy arrays keyed by the file's dataset names."""
    where = f"record {number}"
    if isinstance(record, AtomicData):
        record = {k: v for k, v in record.to_dict().items() if k not in _DERIVED}
    elif not isinstance(record, Mapping):
        raise TypeError(f"{where}: expected a mapping or AtomicData, got {type(record).__name__}")
    by_key = {key: name for name, key in DATASETS.items()}
    arrays = {}
    for key, value in record.items():
        name = key if key in DATASETS else by_key.get(key)
        if name is None:
            raise ValueError(f"{where}: unknown entry {key!r}; the file stores {list(DATASETS)}")
        if value is None:
            continue
        if hasattr(value, "detach"):
            value = value.detach().cpu().numpy()
        arrays[name] = np.asarray(value)
    missing = [name for name in ("atomic_numbers", "positions") if name not in arrays]
    if missing:
        raise ValueError(f"{where}: missing {missing}")
    try:
        z = arrays["atomic_numbers"] = as_atomic_numbers(arrays["atomic_numbers"]).numpy()
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from error
    n_atoms = z.size
    checks = {"positions": (n_atoms, 3), "forces": (n_atoms, 3)}
    for name, shape in checks.items():
        if name in arrays:
            arrays[name] = arrays[name].astype(np.float64)
            if arrays[name].shape != shape:
                raise ValueError(f"{where}: {name} has shape {arrays[name].shape}, expected {shape}")
    n_ao = _n_ao(arrays, where)
    for name in _MATRICES:
        if name in arrays:
            arrays[name] = arrays[name].astype(np.float64).reshape(n_ao, n_ao)
    if "orbital_energies" in arrays:
        arrays["orbital_energies"] = arrays["orbital_energies"].astype(np.float64).reshape(-1)
    if "energy" in arrays:
        if arrays["energy"].size != 1:
            raise ValueError(f"{where}: energy must be one number, got shape {arrays['energy'].shape}")
        arrays["energy"] = arrays["energy"].astype(np.float64).reshape(())
    for name, value in arrays.items():
        try:
            require_finite(name, value)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from error
    return arrays
