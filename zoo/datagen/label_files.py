"""The label files of :func:`zoo.datagen.labelling.label`: extended XYZ and the HDF5 Hamiltonian format.

Appending a structure's labels atomically, reading back what a file holds (its level of theory,
the ``source_index`` of every label) to resume a run, and putting a finished file in source order.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from zoo._files import atomic_path
from zoo.data.readers.ase_io import write_extxyz
from zoo.data.readers.hamiltonian import DATASETS, GROUP, HamiltonianMetadata, read_hamiltonian_metadata, write_hamiltonian_h5
from zoo.datagen.files import read_structures

#: Name of the HDF5 dataset (zoo.data.keys) for each labelled property.
H5_NAMES = {"fock": "hamiltonian", "overlap": "overlap", "density_matrix": "density_matrix",
            "orbital_energies": "orbital_energies", "energy": "energy", "forces": "forces"}


# --- extended XYZ -----------------------------------------------------------------------------


def labelled_atoms(atoms, index: int, result: dict, properties, metadata):
    """A copy of ``atoms`` carrying the labels as calculator results and the level in ``info``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = atoms.copy()  # keeps the input's info and arrays (e.g. xtb_energy for Δ-learning)
    # the level as the HDF5 attributes spell it (AO conventions do not apply to extended XYZ)
    frame.info.update(metadata.level_attrs(), source_index=int(index), scf_cycles=result["cycles"])
    frame.calc = SinglePointCalculator(frame, **{p: result[p] for p in properties})
    return frame


def extxyz_metadata(path: Path) -> HamiltonianMetadata:
    """The level of theory recorded in the first frame of a label file."""
    info = dict(read_structures(path, index=0)[0].info)
    if "pyscf_version" in info:
        info["pyscf_version"] = str(info["pyscf_version"])  # extxyz would read "2.3" as a float
    return HamiltonianMetadata.from_level_attrs(info, f"{path} (not a zoo label file?): its first frame")


# --- HDF5 -------------------------------------------------------------------------------------
# The Hamiltonian format has no field for the source index (or the dipole), so it is kept as an
# attribute of each structure's group, which read_hamiltonian_h5 ignores.


def h5_record(atoms, result: dict, properties) -> dict:
    record = {"atomic_numbers": atoms.numbers, "positions": atoms.positions}
    record.update({H5_NAMES[p]: result[p] for p in properties})
    return record


def append_h5(path: Path, records: list, extras: list, metadata) -> None:
    """Append records atomically, tagging each group with ``source_index`` and ``scf_cycles``.

    write_hamiltonian_h5 is atomic on its own, but tagging its groups afterwards would not be, so
    both happen on a private copy that then replaces ``path``.
    """
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    work = h5_work_file(path)
    try:
        if path.exists():
            shutil.copyfile(path, work)
        total = write_hamiltonian_h5(work, records, metadata, append=True)
        with h5py.File(work, "a") as handle:
            group = handle[GROUP]
            for number, (index, result) in enumerate(extras, start=total - len(records)):
                group[f"{number:06d}"].attrs.update(source_index=int(index), scf_cycles=int(result["cycles"]))
        with open(work, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(work, path)
    finally:
        work.unlink(missing_ok=True)


def h5_work_file(path: Path) -> Path:
    """The private copy :func:`append_h5` appends to before it replaces ``path``."""
    return path.with_name(f".{path.name}.labelling")


def read_h5_entries(path: Path) -> list:
    """``(source_index, (record, {"cycles": ...}))`` for every structure of a label file."""
    import h5py

    entries = []
    with h5py.File(path, "r") as handle:
        for name in sorted(handle[GROUP], key=int):
            group = handle[GROUP][name]
            record = {key: group[key][()] for key in DATASETS if key in group}
            entries.append((source_index(group, path), (record, {"cycles": int(group.attrs.get("scf_cycles", -1))})))
    return entries


def source_index(group, path) -> int:
    if "source_index" not in group.attrs:
        raise ValueError(f"{path}:{group.name} has no source_index attribute; it was not written by zoo label")
    return int(group.attrs["source_index"])


# --- resuming ---------------------------------------------------------------------------------


def stored_indices(out: Path, metadata, hdf5: bool) -> set[int]:
    """Source indices already labelled in ``out``, after checking it was made at the same level."""
    if not out.exists():
        return set()
    check_level(out, metadata, hdf5)
    if hdf5:
        import h5py

        with h5py.File(out, "r") as handle:
            groups = handle[GROUP].values() if GROUP in handle else []
            return {source_index(group, out) for group in groups}
    return {int(frame.info["source_index"]) for frame in read_structures(out)}


def check_level(path: Path, metadata, hdf5: bool) -> None:
    """Labels at two levels of theory (PySCF version included) never share a file."""
    stored = read_hamiltonian_metadata(path) if hdf5 else extxyz_metadata(path)
    try:
        stored.check_compatible(metadata, ignore=())
    except ValueError as error:
        raise ValueError(f"{path} holds labels at another level of theory: {error}") from error


def sort_by_source(out: Path, hdf5: bool) -> None:
    """Put the labels in ``source_index`` order (workers finish out of order), atomically.

    A resumed or parallel run then leaves the same file as one uninterrupted serial run.
    """
    if hdf5:
        import h5py

        with h5py.File(out, "r") as handle:
            names = sorted(handle[GROUP], key=int)
            order = sorted(names, key=lambda name: source_index(handle[GROUP][name], out))
        if order == names:
            return
        with atomic_path(out, copy_existing=True) as work, h5py.File(work, "a") as handle:
            group = handle[GROUP]  # renaming links moves no data
            for name in names:
                group.move(name, f"unsorted-{name}")
            for number, name in enumerate(order):
                group.move(f"unsorted-{name}", f"{number:06d}")
        return
    frames = read_structures(out)
    indices = [int(frame.info["source_index"]) for frame in frames]
    if indices != sorted(indices):
        write_extxyz(out, sorted(frames, key=lambda frame: int(frame.info["source_index"])))
