import ase.io
import numpy as np
import pytest
from ase.build import molecule

from zoo.data import keys
from zoo.data.readers import read_structures
from zoo.data.readers.hamiltonian import HamiltonianMetadata, write_hamiltonian_h5
from zoo.qc import LevelOfTheory


def test_dispatch_by_extension_and_name(tmp_path):
    xyz = tmp_path / "a.extxyz"
    ase.io.write(xyz, [molecule("H2O")], format="extxyz")
    assert len(read_structures(xyz)) == 1
    assert len(read_structures(xyz, format="extxyz")) == 1

    npz = tmp_path / "a.npz"
    np.savez(npz, z=[1, 1], R=np.zeros((2, 2, 3)) + [[0, 0, 0], [0, 0, 0.74]], E=np.zeros((2, 1)), F=np.zeros((2, 2, 3)))
    assert read_structures(npz, indices=[1])[0][keys.ENERGY].tolist() == [0.0]

    h5 = tmp_path / "a.h5"
    meta = HamiltonianMetadata(LevelOfTheory(method="rhf", xc=None, basis="sto-3g"), pyscf_version="2.8.0")
    write_hamiltonian_h5(h5, [{"z": [1, 1], "pos": [[0, 0, 0], [0, 0, 0.74]], "overlap": np.eye(2)}], meta)
    assert read_structures(h5).metadata["hamiltonian"] == meta

    assert len(read_structures("qm9", limit=3)) == 3


def test_unknown_format_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="cannot tell the format of .*data.foo.*known extensions"):
        read_structures(tmp_path / "data.foo")
    with pytest.raises(ValueError, match="unknown format 'parquet'; known formats: .*hamiltonian.*md17.*qm9"):
        read_structures(tmp_path / "data.foo", format="parquet")

