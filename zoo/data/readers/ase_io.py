"""Any file ASE reads: extended XYZ, ASE databases (``.db``), trajectories, ...

ASE files are in eV and Å by convention (energies eV, forces eV/Å, stress eV/Å³, dipole e·Å),
which are zoo's units, so nothing is converted. A file in other units must be converted first
(or its values named through ``info_keys``/``array_keys`` and scaled afterwards).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from collections.abc import Mapping, Sequence

import numpy as np

from zoo.data import keys
from zoo.data._atomic_data import AtomicData
from zoo.data.dataset import AtomicDataset, check_consistent_keys, resolve_dtype
from zoo.data.readers._common import existing_file, normalize_indices
from zoo.data.transforms import MolecularGraph

#: Calculator results taken when present: ASE name -> canonical key.
ASE_RESULTS = {"energy": keys.ENERGY, "forces": keys.FORCES, "stress": keys.STRESS, "dipole": keys.DIPOLE}

_EXPECTED = "an ASE-readable file such as extended XYZ (.xyz, .extxyz), an ASE database (.db) or trajectory (.traj)"


def read_ase(
    path: str | os.PathLike,
    format: str | None = None,
    indices: Sequence[int] | None = None,
    info_keys: Mapping[str, str] | Sequence[str] | None = None,
    array_keys: Mapping[str, str] | Sequence[str] | None = None,
    results: Sequence[str] | None = None,
    dtype=None,
    mask_missing: bool = False,
    molecular_graph: bool = False,
) -> AtomicDataset:
    """Read all structures of a file with :func:`ase.io.read` (``index=":"``).

    Energy, forces, stress and dipole come from the attached calculator's results (as written
    by :func:`ase.io.write` or stored in an ASE database). Other per-structure values
    (``atoms.info``, and the key-value pairs and data of a database row) and per-atom arrays
    (``atoms.arrays``) are read only when named (ASE may have moved them into the calculator's
    results, which are searched too); a named value missing on any structure is an
    error, and all structures must carry the same properties.

    Args:
        path: the file.
        format: an :func:`ase.io.read` format name (default: guessed from the file).
        indices: structures to keep (0-based), in the order given, or a slice string such as
            ``"0:160"``; default all.
        info_keys: per-structure values to read, file key -> canonical key (a list keeps names),
            e.g. ``{"REF_energy": "energy"}``; a named value takes precedence over the calculator's.
        array_keys: per-atom arrays to read, file key -> canonical key.
        results: calculator results to take (default all of :data:`ASE_RESULTS` that are present).
        dtype: floating dtype (default: torch's default).
        mask_missing: allow calculator results on some structures only (a file where only some
            frames were labelled): every structure then carries each result named in
            ``results`` (default: each found in the file), zeros where it had none, and its mask
            (``has_energy``, ``has_forces``, ... see :data:`zoo.data.keys.MASKS`), true where the
            value is real. Statistics (:mod:`zoo.data.transforms`) skip masked values; tasks
            must too.
        molecular_graph: add the molecular graph of each structure from ``atoms.info["smiles"]``,
            which must list the atoms in the frame's order (a mapped SMILES, see
            :mod:`zoo.data.molgraph`): ``smiles``, ``bond_index``, ``bond_type`` and
            ``atom_features`` (:class:`zoo.data.transforms.MolecularGraph`).

    Returns:
        An :class:`AtomicDataset`; units are ASE's (eV, Å), as documented in this module.

    Raises:
        ValueError: ASE cannot read the file (the file and the formats expected are named), or a
            named key is missing, or structures carry different properties.
    """
    import ase.io

    path = existing_file(path, "structure")
    dtype = resolve_dtype(dtype)
    info_keys = _as_mapping(info_keys)
    array_keys = _as_mapping(array_keys)
    named_results = results is not None
    results = list(ASE_RESULTS) if results is None else list(results)
    unknown = [r for r in results if r not in ASE_RESULTS]
    if unknown:
        raise ValueError(f"unknown calculator results {unknown}; known: {list(ASE_RESULTS)}")
    is_db = (format or path.suffix.lstrip(".")).lower() == "db"
    try:
        if is_db:
            images, extras = _read_db(path)
        else:
            images = ase.io.read(path, index=":", format=format)
            extras = [{} for _ in images]
    except Exception as error:  # ASE raises many kinds here; the user needs the file and what was expected
        # a bare KeyError is a name ASE does not know, mostly an element symbol ('Xx')
        detail = f"unknown element symbol or name {error}" if isinstance(error, KeyError) else error
        raise ValueError(f"cannot read {path} with ase.io.read (format={format!r}): {detail}; "
                         f"expected {_EXPECTED}") from error
    selected = normalize_indices(indices, len(images), str(path))
    selected = range(len(images)) if selected is None else selected.tolist()
    # masked results: those named, or else those found on any structure
    found = results if named_results else [
        name for name in results if any(_calc_results(images[i]).get(name) is not None for i in selected)]
    graph = MolecularGraph() if molecular_graph else None

    data = []
    for i in selected:
        atoms, extra = images[i], extras[i]
        values, labels = {}, {}
        calc_results = _calc_results(atoms)
        for name in results:
            if calc_results.get(name) is not None:
                values[ASE_RESULTS[name]] = _result(name, calc_results[name])
        if mask_missing:
            for name in found:
                key = ASE_RESULTS[name]
                values[keys.MASKS[key]] = np.array(key in values)
                if key not in values:
                    values[key] = np.zeros(_RESULT_SHAPES[name](len(atoms)))
        if molecular_graph:
            if not isinstance(atoms.info.get("smiles"), str):
                raise ValueError(f"{path}: structure {i} has no info['smiles'] to build its molecular graph from "
                                 f"(molecular_graph=True); it has info keys {sorted(atoms.info)}")
            labels[keys.SMILES] = atoms.info["smiles"]
        for file_key, key in info_keys.items():
            value = _lookup(file_key, atoms.info, calc_results, extra)
            if value is None:
                raise ValueError(f"{path}: structure {i} has no info value {file_key!r}; "
                                 f"it has {sorted(set(atoms.info) | set(calc_results) | set(extra))}")
            if isinstance(value, str):  # a label such as a config type, kept as a plain attribute
                if key in _NUMERIC_KEYS:
                    raise ValueError(f"{path}: structure {i}: info value {file_key!r} is text ({value!r}), "
                                     f"but {key!r} must be a number")
                labels[key] = value
                continue
            value = np.asarray(value)
            if value.dtype.kind not in "biuf":
                raise ValueError(f"{path}: structure {i}: info value {file_key!r} is not numeric ({value!r})")
            values[key] = value if key in keys.PER_STRUCTURE else value.reshape(1, *value.shape)
        for file_key, key in array_keys.items():
            value = _lookup(file_key, atoms.arrays, calc_results, extra)
            if value is None:
                raise ValueError(f"{path}: structure {i} has no per-atom array {file_key!r}; "
                                 f"it has {sorted(set(atoms.arrays) | set(calc_results) | set(extra))}")
            value = np.asarray(value)
            if value.dtype.kind not in "biuf":
                raise ValueError(f"{path}: structure {i}: array {file_key!r} is not numeric (dtype {value.dtype})")
            if value.shape[:1] != (len(atoms),):
                raise ValueError(f"{path}: structure {i}: array {file_key!r} has shape {value.shape}, "
                                 f"expected {len(atoms)} rows (one per atom)")
            values[key] = value
        try:
            item = AtomicData.from_ase(atoms, values, dtype=dtype)
        except ValueError as error:
            raise ValueError(f"{path}: structure {i}: {error}") from error
        for key, label in labels.items():
            item[key] = label
        if graph is not None:
            try:
                item = graph(item)
            except ValueError as error:
                raise ValueError(f"{path}: structure {i}: {error}") from error
        data.append(item)
    check_consistent_keys(data, str(path))
    return AtomicDataset(data, metadata={"source": str(path), "format": format or "ase",
                                         "units": {"energy": "eV", "length": "Å"}})


def _calc_results(atoms) -> dict:
    return getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}


#: Canonical keys that hold numbers, never text.
_NUMERIC_KEYS = keys.PER_STRUCTURE | keys.PER_ATOM | keys.AO_MATRICES | {keys.ORBITAL_ENERGIES}

#: Shape of each calculator result for a structure of n atoms (the zeros of a missing one).
_RESULT_SHAPES = {"energy": lambda n: (), "forces": lambda n: (n, 3), "stress": lambda n: (3, 3), "dipole": lambda n: (3,)}


def _lookup(key, *sources):
    # ASE moves values with a calculator property's name (e.g. "charges", "energy") from
    # info/arrays into the calculator's results when reading extxyz, so look there too
    for source in sources:
        if source.get(key) is not None:
            return source[key]
    return None


def _as_mapping(names) -> dict[str, str]:
    if names is None:
        return {}
    if isinstance(names, Mapping):
        return {str(k): str(v) for k, v in names.items()}
    if isinstance(names, str):
        return {names: names}
    return {str(n): str(n) for n in names}


def _result(name: str, value) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    if name == "stress" and value.shape == (6,):
        from ase.stress import voigt_6_to_full_3x3_stress

        value = voigt_6_to_full_3x3_stress(value)
    return value


def _read_db(path):
    """Rows of an ASE database as Atoms (calculator results attached) and their key-value pairs and data.

    :func:`ase.io.read` drops a row's key-value pairs and data, which users name in ``info_keys``.
    """
    import ase.db

    images, extras = [], []
    with ase.db.connect(path) as database:
        for row in database.select():
            images.append(row.toatoms())
            extra = dict(row.key_value_pairs)
            extra.update(row.data or {})
            extras.append(extra)
    return images, extras


def write_extxyz(path: str | os.PathLike, frames: Sequence, append: bool = False) -> Path:
    """Write (or append) ASE frames as extended XYZ, atomically.

    The frames go to a temporary copy of the file that then replaces it (:func:`os.replace`),
    so a reader, or a job killed mid-write, never sees a half-written file. Backslashes in string
    ``info`` values (SMILES stereo bonds, ``C\\C=O``) are escaped: ASE's reader unescapes them but
    its writer does not escape them.
    """
    frames = list(frames)
    originals = [dict(atoms.info) for atoms in frames]
    for atoms in frames:
        atoms.info.update({k: v.replace("\\", "\\\\") for k, v in atoms.info.items() if isinstance(v, str) and "\\" in v})
    try:
        return _write_extxyz_atomically(Path(path), frames, append)
    finally:
        for atoms, info in zip(frames, originals):
            atoms.info.clear()
            atoms.info.update(info)


def _write_extxyz_atomically(path: Path, frames: list, append: bool) -> Path:
    import ase.io

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if append and path.exists():
            shutil.copyfile(path, tmp)
        with open(tmp, "a" if append else "w") as stream:
            ase.io.write(stream, frames, format="extxyz")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
