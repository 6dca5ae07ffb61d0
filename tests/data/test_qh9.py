"""QH9 reader on tiny files in the release's SQLite layouts, filled with PySCF water matrices."""

import sqlite3
from contextlib import closing
from functools import lru_cache

import numpy as np
import pytest
import scipy.linalg
import torch

from zoo.data import keys
from zoo.data.readers import read_structures
from zoo.data.readers.qh9 import QH9_LEVEL, qh9_metadata, read_qh9
from zoo.data.units import BOHR, HARTREE
from zoo.qc.level import LevelOfTheory

Z = np.array([8, 1, 1], dtype=np.int32)
POS = np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]])


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


@lru_cache(maxsize=None)
def _water_scf():
    level = LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=1)  # cheap grid: a format test
    mf = level.build_scf(level.build_mole(Z, POS), conv_tol=1e-12)
    mf.kernel()
    return mf


def _write_stable(path, n_rows=2):
    fock = _water_scf().get_fock()
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE data (id INTEGER NOT NULL PRIMARY KEY, N INTEGER, Z BLOB, pos BLOB, Ham BLOB)")
        for i in range(n_rows):
            db.execute("INSERT INTO data VALUES (?,?,?,?,?)", (i, 3, Z.tobytes(), (POS + i).tobytes(), fock.tobytes()))
        db.commit()


def _write_dynamic(path):
    mf = _water_scf()
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE data (id INTEGER NOT NULL, geo_id INTEGER NOT NULL, N INTEGER, Z BLOB, pos BLOB, "
                   "ekin FLOAT, epot FLOAT, etot FLOAT, time FLOAT, Ham BLOB, converged INT)")
        db.execute("INSERT INTO data VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                   (np.int64(7).tobytes(), 0, 3, Z.tobytes(), (POS / BOHR).tobytes(), 0.001, mf.e_tot,
                    mf.e_tot + 0.001, 0.0, mf.get_fock().tobytes(), 1))
        db.commit()


def test_stable_round_trip_and_orbital_energies(tmp_path):
    path = tmp_path / "QH9Stable.db"
    _write_stable(path)
    dataset = read_qh9(path, overlap=True, dtype=torch.float64)
    assert len(dataset) == 2 and dataset.metadata["format"] == "qh9-stable"
    assert dataset.metadata["hamiltonian"] == qh9_metadata() and qh9_metadata().level == QH9_LEVEL
    assert dataset.metadata["hamiltonian"].level.xc == "b3lyp5"
    first = dataset[0]
    mf = _water_scf()
    np.testing.assert_array_equal(first[keys.ATOMIC_NUMBERS].numpy(), Z)
    np.testing.assert_allclose(first[keys.POSITIONS].numpy(), POS)
    n_ao = int(first[keys.N_AO])
    assert n_ao == 24 and int(first[keys.N_ELECTRONS]) == 10
    hamiltonian = first[keys.HAMILTONIAN].reshape(n_ao, n_ao).numpy()
    overlap = first[keys.OVERLAP].reshape(n_ao, n_ao).numpy()
    np.testing.assert_array_equal(hamiltonian, mf.get_fock())
    np.testing.assert_allclose(overlap, mf.get_ovlp(), atol=1e-12)
    # PySCF order survives: the generalised eigenvalues are PySCF's orbital energies
    np.testing.assert_allclose(scipy.linalg.eigh(hamiltonian, overlap, eigvals_only=True), mf.mo_energy, atol=1e-6)
    assert len(read_qh9(path, indices=[1])) == 1
    assert len(read_structures(path, format="qh9", indices=[1])) == 1  # through the dispatcher


def test_dynamic_positions_from_bohr_and_energy_in_ev(tmp_path):
    path = tmp_path / "QH9Dynamic_100k.db"
    _write_dynamic(path)
    (frame,) = read_qh9(path, dtype=torch.float64)
    np.testing.assert_allclose(frame[keys.POSITIONS].numpy(), POS, atol=1e-12)
    np.testing.assert_allclose(float(frame[keys.ENERGY]), _water_scf().e_tot * HARTREE)
    assert keys.OVERLAP not in frame


def test_bad_files_are_named(tmp_path):
    wrong = tmp_path / "other.db"
    with closing(sqlite3.connect(wrong)) as db:
        db.execute("CREATE TABLE data (a, b)")
        db.commit()
    with pytest.raises(ValueError, match="expected QH9-stable's 5"):
        read_qh9(wrong)
    truncated = tmp_path / "truncated.db"
    with closing(sqlite3.connect(truncated)) as db:
        db.execute("CREATE TABLE data (id INTEGER PRIMARY KEY, N INTEGER, Z BLOB, pos BLOB, Ham BLOB)")
        db.execute("INSERT INTO data VALUES (0, 3, ?, ?, ?)", (Z.tobytes(), POS.tobytes(), np.zeros(10).tobytes()))
        db.commit()
    with pytest.raises(ValueError, match="expected 24² for def2-SVP"):
        read_qh9(truncated)
    with pytest.raises(FileNotFoundError):
        read_qh9(tmp_path / "missing.db")
