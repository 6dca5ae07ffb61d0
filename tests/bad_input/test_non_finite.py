"""NaN and inf in a file are errors naming the file, the frame and the key, in every reader.

Each file is written in its real format by the format's own tools (ASE, h5py without zoo's
writer, numpy, sqlite3, csv), so that the reader, not a writer, has to catch the value.
"""

import sqlite3
from contextlib import closing

import ase.io
import h5py
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.db import connect

from zoo.data import AtomicData, AtomicDataModule, keys
from zoo.data.readers import HamiltonianMetadata, read_structures, write_hamiltonian_h5
from zoo.data.readers.qm9 import QM9_COLUMNS, read_qm9
from zoo.data.transforms import SubtractReferenceEnergies, compute_statistics, fit_reference_energies
from zoo.qc import LevelOfTheory

NAN, INF = float("nan"), float("inf")
WATER = molecule("H2O")
META = HamiltonianMetadata(LevelOfTheory(xc="b3lyp5", basis="sto-3g", grid_level=3), pyscf_version="2.8.0")


def _labelled_water(energy=-2070.0, forces=None, positions=None):
    atoms = WATER.copy()
    if positions is not None:
        atoms.positions = positions
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((3, 3)) if forces is None else forces)
    return atoms


def _with(array, index, value):
    array = np.array(array, dtype=float)
    array[index] = value
    return array


@pytest.mark.parametrize("bad, key", [
    (dict(energy=NAN), "energy"),
    (dict(forces=_with(np.zeros((3, 3)), (1, 2), INF)), "forces"),
    (dict(positions=_with(WATER.positions, (2, 0), NAN)), "positions"),
])
def test_extxyz(tmp_path, bad, key):
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, [_labelled_water(), _labelled_water(**bad)], format="extxyz")
    with pytest.raises(ValueError, match=rf"frames.extxyz: structure 1: {key} holds 1 NaN or inf .*drop this"):
        read_structures(path)


def test_ase_database(tmp_path):
    path = tmp_path / "frames.db"
    with connect(path) as database:  # (a NaN energy is stored as no energy; NaN forces are kept)
        database.write(_labelled_water(forces=_with(np.zeros((3, 3)), (0, 0), NAN)))
    with pytest.raises(ValueError, match="frames.db: structure 0: forces holds 1 NaN"):
        read_structures(path)


@pytest.mark.parametrize("name, value", [
    ("hamiltonian", _with(np.eye(7), (3, 4), NAN)),
    ("energy", np.float64(INF)),
    ("positions", _with(WATER.positions, (0, 1), NAN)),
])
def test_hamiltonian_hdf5_written_without_zoo(tmp_path, name, value):
    path = tmp_path / "water.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs.update(META.to_attrs())
        for number in range(2):
            item = handle.create_group(f"structures/{number:06d}")
            arrays = {"atomic_numbers": WATER.numbers, "positions": WATER.positions, "hamiltonian": np.eye(7),
                      "energy": np.float64(-2070.0)}
            if number == 1:
                arrays[name] = value
            for dataset, array in arrays.items():
                item.create_dataset(dataset, data=array)
    with pytest.raises(ValueError, match=rf"water.h5:structures/000001: {name} holds 1 NaN or inf .*drop this"):
        read_structures(path)


def test_hamiltonian_writer_refuses_them_too(tmp_path):
    record = {"atomic_numbers": WATER.numbers, "positions": WATER.positions, "hamiltonian": _with(np.eye(7), 0, NAN)}
    with pytest.raises(ValueError, match="record 0: hamiltonian holds 7 NaN or inf"):
        write_hamiltonian_h5(tmp_path / "water.h5", [record], META)


@pytest.mark.parametrize("key, file_key", [("forces", "F"), ("positions", "R")])
def test_md17(tmp_path, key, file_key):
    arrays = {"z": WATER.numbers, "R": np.stack([WATER.positions] * 3), "E": np.zeros((3, 1)), "F": np.zeros((3, 3, 3))}
    arrays[file_key][2, 1, 0] = INF
    path = tmp_path / "md17_water.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"md17_water.npz: frame 2: {key} holds 1 NaN or inf .*index \[1, 0\]"):
        read_structures(path)


def test_qm9_csv(tmp_path):
    row = {name: 0.0 for name in QM9_COLUMNS}
    row.update({"Index": 3, "SMILES": "O", "N_atoms": 3, "Elements": "['O','H','H']",
                "XYZ_Ang": str(WATER.positions.tolist()), "InternalEnergy_0K_au": "nan"})
    path = tmp_path / "qm9.csv"
    path.write_text(",".join(QM9_COLUMNS) + "\n" + ",".join(f'"{row[name]}"' for name in QM9_COLUMNS) + "\n")
    with pytest.raises(ValueError, match=r"qm9.csv:2: cannot read this QM9 row: U0 holds 1 NaN"):
        read_qm9(path)


def test_qh9_sqlite(tmp_path):
    from zoo.data.readers.qh9 import read_qh9

    path = tmp_path / "QH9Stable.db"
    fock = _with(np.eye(24), (0, 5), NAN)  # water in def2-SVP: 24 AOs
    with closing(sqlite3.connect(path)) as database:
        database.execute("CREATE TABLE data (id INTEGER PRIMARY KEY, N INTEGER, Z BLOB, pos BLOB, Ham BLOB)")
        database.execute("INSERT INTO data VALUES (?,?,?,?,?)", (0, 3, WATER.numbers.astype(np.int32).tobytes(),
                                                                 WATER.positions.tobytes(), fock.tobytes()))
        database.commit()
    with pytest.raises(ValueError, match=r"QH9Stable.db row 0: hamiltonian holds 1 NaN or inf .*index \[5\]"):
        read_qh9(path)


def test_schnorb_database(tmp_path):
    from zoo.data.readers.schnorb import read_schnorb

    path = tmp_path / "schnorb_hamiltonian_water.db"
    forces = _with(np.zeros((3, 3)), (1, 1), NAN)
    with connect(path) as database:
        database.write(Atoms(WATER.numbers, WATER.positions),
                       data={"hamiltonian": np.eye(24), "overlap": np.eye(24), "forces": forces})
    with pytest.raises(ValueError, match="schnorb_hamiltonian_water.db row id 1: forces holds 1 NaN or inf"):
        read_schnorb(path)


def test_a_fit_stops_at_the_reader_naming_the_frame(tmp_path):
    path = tmp_path / "train.extxyz"
    ase.io.write(path, [_labelled_water(energy=-2070.0 - i) for i in range(6)] + [_labelled_water(energy=NAN)],
                 format="extxyz")
    data = AtomicDataModule(str(path), targets=["energy"], reference_energies=["energy"],
                            split={"method": "random", "sizes": [5, 2, 0]})
    with pytest.raises(ValueError, match="train.extxyz: structure 6: energy holds 1 NaN"):
        data.setup("fit")


def _waters(n, nan_frame):
    frames = [AtomicData.from_ase(WATER, {keys.ENERGY: -2070.0 - i}) for i in range(n)]
    frames[nan_frame][keys.ENERGY] = torch.tensor([NAN])  # past from_arrays, as a hand-made dataset could be
    return frames


def test_statistics_name_the_structure_instead_of_blaming_the_references():
    # a NaN energy used to give "no reference energy for element(s) ['H', 'O']; references exist for ['H', 'O']"
    with pytest.raises(ValueError, match="structure 2: energy holds 1 NaN or inf"):
        fit_reference_energies(_waters(4, nan_frame=2))
    with pytest.raises(ValueError, match="structure 1: energy holds 1 NaN or inf"):
        compute_statistics(_waters(4, nan_frame=1), keys.ENERGY)
    with pytest.raises(ValueError, match="reference energy of H is nan"):
        SubtractReferenceEnergies({"H": NAN, "O": -2000.0})
