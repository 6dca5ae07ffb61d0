"""Malformed, truncated and damaged files, as a careless or hostile user would give them: each is a
``ValueError`` naming the file (and the frame, when one frame is at fault) and what is wrong,
never a silently wrong structure or a bare numpy/h5py traceback.
"""

import sqlite3
from base64 import b64encode
from contextlib import closing

import ase.io
import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.db import connect

from zoo.data.readers import HamiltonianMetadata, read_md17, read_structures, write_hamiltonian_h5
from zoo.qc import LevelOfTheory

WATER = molecule("H2O")
META = HamiltonianMetadata(LevelOfTheory(xc="b3lyp5", basis="sto-3g", grid_level=3), pyscf_version="2.8.0")


# --- extended XYZ and ASE databases ---------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("0\nProperties=species:S:1:pos:R:3\n", "structure 0: a structure needs at least one atom"),
    ("2\nProperties=species:S:1:pos:R:3\nXx 0 0 0\nH 0 0 1\n", "unknown element symbol or name 'Xx'"),
    ("2\nProperties=species:S:1:pos:R:3:forces:R:2 energy=1.0\nH 0 0 0 1 1\nH 0 0 1 1 1\n",
     r"structure 0: forces has shape \(2, 2\), expected \(2, 3\)"),
    ("3\nProperties=species:S:1:pos:R:3 energy=1.0\nO 0 0 0\nH 0 0 1\n", "Frame has 2 atoms, expected 3"),  # truncated
])
def test_malformed_extxyz(tmp_path, text, message):
    path = tmp_path / "bad.extxyz"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"bad.extxyz.*{message}"):
        read_structures(path)


def test_an_empty_file_reads_as_no_structures_and_a_fit_says_so(tmp_path):
    from zoo.data import AtomicDataModule

    path = tmp_path / "empty.extxyz"
    path.write_text("")
    assert len(read_structures(path)) == 0
    with pytest.raises(ValueError, match="dataset is empty: .*empty.extxyz.* gave no structures"):
        AtomicDataModule(str(path)).setup("fit")


@pytest.mark.parametrize("info, message", [
    ({"REF_energy": "not computed"}, "info value 'REF_energy' is text .*'energy' must be a number"),
    ({"REF_energy": -1.0, "REF_stress": np.arange(6.0)}, r"stress has shape \(6,\), expected \(3, 3\)"),  # Voigt
])
def test_info_values_of_the_wrong_kind(tmp_path, info, message):
    path = tmp_path / "info.extxyz"
    atoms = WATER.copy()
    atoms.info.update(info)
    ase.io.write(path, atoms, format="extxyz")
    with pytest.raises(ValueError, match=rf"info.extxyz: structure 0: {message}"):
        read_structures(path, info_keys={name: name.removeprefix("REF_") for name in info})


def test_a_foreign_file_named_db(tmp_path):
    path = tmp_path / "frames.db"
    path.write_bytes(b"\x00garbage" * 400)
    with pytest.raises(ValueError, match="cannot read .*frames.db.*expected an ASE-readable file"):
        read_structures(path)


# --- zoo's Hamiltonian HDF5, written with h5py directly ------------------------------------------

def _hdf5(path, **datasets):
    """One structure (water, sto-3g: 7 AOs) with ``datasets`` replacing or adding to the defaults."""
    with h5py.File(path, "w") as handle:
        handle.attrs.update(META.to_attrs())
        item = handle.create_group("structures/000000")
        arrays = {"atomic_numbers": WATER.numbers, "positions": WATER.positions, "hamiltonian": np.eye(7)}
        for name, value in {**arrays, **datasets}.items():
            item.create_dataset(name, data=value)
    return path


@pytest.mark.parametrize("datasets, message", [
    ({"atomic_numbers": np.array([8.0, 1.5, 1.0])}, r"atomic numbers must be whole numbers, got \[1.5\]"),
    ({"atomic_numbers": np.array([b"O", b"H", b"H"])}, "atomic numbers must be integers, got dtype"),
    ({"atomic_numbers": np.zeros(0, dtype=int), "positions": np.zeros((0, 3))}, "a structure needs at least one atom"),
    ({"forces": np.zeros((4, 3))}, r"forces has shape \(4, 3\), expected \(3, 3\)"),
    ({"energy": np.zeros(3)}, r"energy has shape \(3,\), expected one number"),
    ({"orbital_energies": np.zeros((7, 2))}, r"orbital_energies has shape \(7, 2\); expected \[n_ao\]"),
])
def test_malformed_hamiltonian_structure(tmp_path, datasets, message):
    path = _hdf5(tmp_path / "water.h5", **datasets)
    with pytest.raises(ValueError, match=rf"water.h5:structures/000000: {message}"):
        read_structures(path)


def test_structures_zoo_did_not_write(tmp_path):
    path = _hdf5(tmp_path / "water.h5")
    with h5py.File(path, "a") as handle:
        handle["structures/notes"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"water.h5: 'structures' holds \['notes'\], not structures numbered"):
        read_structures(path)


def test_truncated_and_overwritten_hdf5(tmp_path):
    good = tmp_path / "good.h5"
    write_hamiltonian_h5(good, [{"atomic_numbers": WATER.numbers, "positions": WATER.positions,
                                 "hamiltonian": np.eye(7)}] * 5, META)
    content = good.read_bytes()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(content[:len(content) // 2])
    with pytest.raises(ValueError, match="cannot open .*truncated.h5 as HDF5"):
        read_structures(truncated)
    # damage in the file's structure (headers, heaps) surfaces as KeyError, RuntimeError or OSError
    # from h5py, wherever the reader meets it; every one must become an error naming the file
    rng = np.random.default_rng(0)
    damaged = tmp_path / "damaged.h5"
    for _ in range(60):
        scratched = bytearray(content)
        start = int(rng.integers(0, len(content) - 64))
        scratched[start:start + 32] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
        damaged.write_bytes(bytes(scratched))
        try:
            read_structures(damaged)
        except ValueError as error:
            assert "damaged.h5" in str(error)


# --- MD17 .npz ----------------------------------------------------------------------------------

def _md17(path, **arrays):
    defaults = {"z": WATER.numbers, "R": np.stack([WATER.positions] * 2), "E": np.zeros((2, 1)),
                "F": np.zeros((2, 3, 3))}
    np.savez(path, **{**defaults, **arrays})
    return path


@pytest.mark.parametrize("arrays, message", [
    ({"z": np.array([8, "x", 1], dtype=object)}, "never pickled objects"),  # unpickling runs code
    ({"z": np.array([8.0, 1.5, 1.0])}, r"frame 0: atomic numbers must be whole numbers"),
    ({"z": np.array(["O", "H", "H"])}, "frame 0: atomic numbers must be integers"),
    ({"z": np.array([8, 0, 1])}, r"frame 0: unknown atomic numbers \[0\]"),
    ({"E": np.float64(1.0)}, "inconsistent shapes"),
    ({"F": np.zeros((2, 3, 2))}, "inconsistent shapes"),
    ({"E": np.array(["a", "b"])}, r"\['E'\] are not numeric arrays"),
])
def test_malformed_md17(tmp_path, arrays, message):
    path = _md17(tmp_path / "md17_water.npz", **arrays)
    with pytest.raises(ValueError, match=rf"md17_water.npz.*{message}"):
        read_md17(path)


def test_md17_without_frames_and_in_unknown_units(tmp_path):
    empty = _md17(tmp_path / "md17_empty.npz", R=np.zeros((0, 3, 3)), E=np.zeros((0, 1)), F=np.zeros((0, 3, 3)))
    assert len(read_md17(empty)) == 0  # used to be numpy's "cannot reshape array of size 0"
    with pytest.raises(ValueError, match="unknown energy unit 'Ry'"):
        read_md17(_md17(tmp_path / "md17_water.npz"), units="Ry")


# --- QH9 and SchNOrb ----------------------------------------------------------------------------

@pytest.mark.parametrize("z, n_atoms, message", [
    (np.array([0, 1, 1], dtype=np.int32), 3, r"unknown atomic numbers \[0\]"),
    (np.array([118, 1, 1], dtype=np.int32), 3, "basis 'def2-svp' has no functions for element Og"),
    (np.zeros(0, dtype=np.int32), 0, "a structure needs at least one atom"),
])
def test_malformed_qh9_rows(tmp_path, z, n_atoms, message):
    from zoo.data.readers.qh9 import read_qh9

    path = tmp_path / "QH9Stable.db"
    with closing(sqlite3.connect(path)) as database:
        database.execute("CREATE TABLE data (id INTEGER PRIMARY KEY, N INTEGER, Z BLOB, pos BLOB, Ham BLOB)")
        database.execute("INSERT INTO data VALUES (?,?,?,?,?)", (0, n_atoms, z.tobytes(),
                                                                 WATER.positions[:n_atoms].tobytes(),
                                                                 np.eye(24).tobytes()))
        database.commit()
    with pytest.raises(ValueError, match=rf"QH9Stable.db row 0: {message}"):
        read_qh9(path)


@pytest.mark.parametrize("data, message", [
    ({"forces": np.zeros((4, 3))}, r"forces has shape \(4, 3\), expected \(3, 3\)"),
    ({"energy": np.zeros(3)}, r"energy has shape \(3,\), expected one number"),
    ({"hamiltonian": b64encode(b"\x00" * 7).decode() + "=", "_shape_hamiltonian": [24, 24],
      "_dtype_hamiltonian": "float32"}, r"'hamiltonian' is not base64 float32 data of shape \(24, 24\)"),
])
def test_malformed_schnorb_rows(tmp_path, data, message):
    from zoo.data.readers.schnorb import read_schnorb

    path = tmp_path / "schnorb_hamiltonian_water.db"
    with connect(path) as database:
        database.write(Atoms(WATER.numbers, WATER.positions),
                       data={"hamiltonian": np.eye(24), "overlap": np.eye(24), **data})
    with pytest.raises(ValueError, match=rf"schnorb_hamiltonian_water.db row id 1: {message}"):
        read_schnorb(path)
