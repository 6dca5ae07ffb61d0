"""SchNOrb reader on a tiny ASE database in SchNOrb's layout: PySCF water matrices permuted to
ORCA order (plain and SchNetPack-0.3 base64 rows) must come back in PySCF order."""

from base64 import b64encode
from functools import lru_cache

import numpy as np
import pytest
import scipy.linalg
import torch
from ase import Atoms
from ase.db import connect

from zoo.data import keys
from zoo.data.readers.schnorb import read_schnorb, schnorb_metadata
from zoo.data.units import HARTREE
from zoo.qc import ao
from zoo.qc.level import LevelOfTheory

Z = [8, 1, 1]
POS = np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]])
MEAN_ENERGY = -76.0


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


@lru_cache(maxsize=None)
def _water_scf():
    level = LevelOfTheory(xc="pbe", basis="def2-svp", grid_level=1)  # cheap grid: a format test
    mf = level.build_scf(level.build_mole(Z, POS), conv_tol=1e-12)
    mf.kernel()
    return mf


def _basisdef():
    """SchNOrb's metadata: per element, rows (idx, type, n, l, m) in ORCA order, zero-padded."""
    table = np.zeros((9, 14, 5), dtype=int)
    for z in (1, 8):
        rows = [(l, m) for l, n in ao.shells("def2-svp", z) for _ in range(n) for m in ao.orca_m_order(l)]
        for i, (l, m) in enumerate(rows):
            table[z, i] = (i, 0, l + 1, l, m)
    return table


def _write(path, basisdef=None):
    mf = _water_scf()
    fock = ao.pyscf_to_orca(mf.get_fock(), Z, "def2-svp").astype(np.float32)
    overlap = ao.pyscf_to_orca(mf.get_ovlp(), Z, "def2-svp").astype(np.float32)
    forces = np.arange(9, dtype=np.float32).reshape(3, 3) / 100
    with connect(path) as db:
        db.write(Atoms(Z, POS), data={"hamiltonian": fock, "overlap": overlap,
                                      "energy": np.array([mf.e_tot - MEAN_ENERGY]), "forces": forces})
        encoded = {}
        for name, value in {"hamiltonian": fock, "overlap": overlap}.items():
            encoded.update({name: b64encode(value.tobytes()).decode(), f"_shape_{name}": list(value.shape),
                            f"_dtype_{name}": str(value.dtype)})
        db.write(Atoms(Z, POS + 1.0), data={**encoded, "energy": np.array([0.0]), "forces": forces})
    db = connect(path)
    db.metadata = {"basisdef": (_basisdef() if basisdef is None else basisdef).tolist(), "mean_energy": MEAN_ENERGY}


def test_orca_matrices_come_back_in_pyscf_order(tmp_path):
    path = tmp_path / "schnorb_hamiltonian_water.db"
    _write(path)
    dataset = read_schnorb(path, dtype=torch.float64)
    assert len(dataset) == 2 and dataset.metadata["hamiltonian"] == schnorb_metadata()
    level = dataset.metadata["hamiltonian"].level
    assert (level.xc, level.grid_level, level.code) == ("pbe", None, "orca")  # ORCA's grid, not PySCF's
    mf = _water_scf()
    for frame in dataset:
        n_ao = int(frame[keys.N_AO])
        hamiltonian = frame[keys.HAMILTONIAN].reshape(n_ao, n_ao).numpy()
        overlap = frame[keys.OVERLAP].reshape(n_ao, n_ao).numpy()
        np.testing.assert_allclose(hamiltonian, mf.get_fock(), atol=1e-5)  # float32 storage
        np.testing.assert_allclose(overlap, mf.get_ovlp(), atol=1e-6)
        energies = scipy.linalg.eigh(hamiltonian, overlap, eigvals_only=True)
        np.testing.assert_allclose(energies, mf.mo_energy, atol=1e-4)
        np.testing.assert_allclose(frame[keys.FORCES].numpy(), np.arange(9).reshape(3, 3) / 100 * HARTREE, rtol=1e-6)
    np.testing.assert_allclose(float(dataset[0][keys.ENERGY]), mf.e_tot * HARTREE)
    np.testing.assert_allclose(float(dataset[1][keys.ENERGY]), MEAN_ENERGY * HARTREE)
    np.testing.assert_allclose(dataset[1][keys.POSITIONS].numpy(), POS + 1.0, atol=1e-6)
    assert len(read_schnorb(path, indices=[1])) == 1


def test_mismatched_basis_definition_is_an_error(tmp_path):
    path = tmp_path / "wrong.db"
    basisdef = _basisdef()
    basisdef[8, 3:6, 4] = [1, -1, 0]  # first p shell as (px, py, pz): not ORCA's order
    _write(path, basisdef)
    with pytest.raises(ValueError, match="not PySCF's def2-SVP in ORCA order"):
        read_schnorb(path)
