"""AO conventions, checked against PySCF: matrices of a rotated molecule, recomputed by PySCF,
equal D M D^T in e3nn order, with D from e3nn's irreps (proper and improper rotations)."""

import numpy as np
import pytest
import torch
from e3nn import o3

from zoo.qc import ao
from zoo.qc.level import LevelOfTheory

WATER = ([8, 1, 1], np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]]))
FORMALDEHYDE = ([6, 8, 1, 1], np.array([[0.0, 0.0, -0.53], [0.0, 0.0, 0.67], [0.0, 0.94, -1.11], [0.0, -0.94, -1.11]]))


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")



def _rotations():
    torch.manual_seed(7)
    proper = o3.rand_matrix(dtype=torch.float64)
    reflection = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    return {"proper": proper, "improper": reflection @ o3.rand_matrix(dtype=torch.float64)}


def _converged_fock(z, pos, basis):
    level = LevelOfTheory(method="rhf", xc=None, basis=basis)
    mol = level.build_mole(z, pos)
    mf = level.build_scf(mol, conv_tol=1e-12)
    mf.conv_tol_grad = 1e-9
    mf.kernel()
    assert mf.converged
    return mf.get_fock(), mf.get_ovlp()


def test_irreps_offsets_and_shells_match_pyscf():
    assert str(ao.ao_irreps("def2-svp", "O")) == "3x0e+2x1o+1x2e"
    assert str(ao.ao_irreps("def2-svp", 1)) == "2x0e+1x1o"
    assert ao.ao_irreps("cc-pvdz", 8).dim == ao.n_ao("cc-pvdz", 8) == 14
    z, pos = WATER
    mol = LevelOfTheory(basis="def2-svp").build_mole(z, pos)
    np.testing.assert_array_equal(ao.ao_offsets(z, "def2-svp"), [*mol.aoslice_by_atom()[:, 2], mol.nao])
    assert ao.molecule_irreps(z, "def2-svp").dim == mol.nao
    with pytest.raises(ValueError, match="no functions for element"):
        ao.shells("sto-3g", "U")


def test_blocks_are_orthogonal_and_p_is_unchanged():
    for l in range(5):
        block = ao.pyscf_to_e3nn_block(l)
        np.testing.assert_allclose(block @ block.T, np.eye(2 * l + 1), atol=1e-12)
    # e3nn 0.6: l=1 harmonics are (x, y, z), like PySCF's p; d and beyond genuinely mix
    np.testing.assert_allclose(ao.pyscf_to_e3nn_block(1), np.eye(3), atol=1e-12)
    assert np.count_nonzero(np.abs(ao.pyscf_to_e3nn_block(2)) > 1e-8) > 5


@pytest.mark.parametrize("kind", ["proper", "improper"])
@pytest.mark.parametrize("molecule", [WATER, FORMALDEHYDE], ids=["water", "formaldehyde"])
def test_converged_fock_and_overlap_transform_with_wigner_d(molecule, kind):
    z, pos = molecule
    rotation = _rotations()[kind]
    fock, overlap = _converged_fock(z, pos, "def2-svp")
    fock_rot, overlap_rot = _converged_fock(z, pos @ rotation.numpy().T, "def2-svp")
    d = ao.wigner_D(z, "def2-svp", rotation).numpy()
    for before, after in [(overlap, overlap_rot), (fock, fock_rot)]:
        expected = d @ ao.pyscf_to_e3nn(before, z, "def2-svp") @ d.T
        np.testing.assert_allclose(ao.pyscf_to_e3nn(after, z, "def2-svp"), expected, atol=1e-6)
    # and the raw PySCF matrices do not transform that way (the conversion matters)
    assert np.abs(overlap_rot - d @ overlap @ d.T).max() > 1e-2


@pytest.mark.parametrize("kind", ["proper", "improper"])
def test_f_and_g_shells_transform_with_wigner_d(kind):
    """cc-pVQZ has f and g functions on O: overlap and core Hamiltonian need no SCF."""
    z, pos = WATER
    rotation = _rotations()[kind]
    level = LevelOfTheory(method="rhf", xc=None, basis="cc-pvqz")
    mats = []
    for p in (pos, pos @ rotation.numpy().T):
        mf = level.build_scf(level.build_mole(z, p))
        mats.append((mf.get_ovlp(), mf.get_hcore()))
    d = ao.wigner_D(z, "cc-pvqz", rotation).numpy()
    for before, after in zip(*mats):
        np.testing.assert_allclose(
            ao.pyscf_to_e3nn(after, z, "cc-pvqz"), d @ ao.pyscf_to_e3nn(before, z, "cc-pvqz") @ d.T, atol=1e-9
        )


def test_round_trips_numpy_torch_and_coefficients():
    z, _ = WATER
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(2, 24, 24))
    e3nn = ao.pyscf_to_e3nn(matrix, z, "def2-svp")
    np.testing.assert_allclose(ao.e3nn_to_pyscf(e3nn, z, "def2-svp"), matrix, atol=1e-12)
    as_torch = ao.pyscf_to_e3nn(torch.as_tensor(matrix), z, "def2-svp")
    np.testing.assert_allclose(as_torch.numpy(), e3nn, atol=1e-12)
    # coefficient matrices transform on the AO rows only: C^T F C is order independent
    coefficients = rng.normal(size=(24, 5))
    c_e3nn = ao.pyscf_to_e3nn(coefficients, z, "def2-svp", axes=(-2,))
    np.testing.assert_allclose(c_e3nn.T @ e3nn[0] @ c_e3nn, coefficients.T @ matrix[0] @ coefficients, atol=1e-10)


def test_orca_order_and_signs():
    # p: ORCA (pz, px, py) -> PySCF (px, py, pz)
    np.testing.assert_array_equal(ao.orca_to_pyscf_block(1) @ np.array([3.0, 1.0, 2.0]), [1.0, 2.0, 3.0])
    # d: ORCA (d0, d+1, d-1, d+2, d-2) -> PySCF m = -2..2, no sign changes
    np.testing.assert_array_equal(ao.orca_to_pyscf_block(2) @ np.array([0.0, 1, -1, 2, -2]), [-2, -1, 0, 1, 2])
    # f: |m| = 3 flips sign
    np.testing.assert_array_equal(
        ao.orca_to_pyscf_block(3) @ np.array([0.0, 1, -1, 2, -2, 3, -3]), [3, -2, -1, 0, 1, 2, -3]
    )
    z, _ = FORMALDEHYDE
    matrix = np.random.default_rng(1).normal(size=(38, 38))
    np.testing.assert_allclose(ao.orca_to_pyscf(ao.pyscf_to_orca(matrix, z, "def2-svp"), z, "def2-svp"), matrix)
