"""A converged Fock matrix as the SCF guess converges at once; MINAO needs many more cycles."""

import numpy as np
import pytest
import torch

from zoo.qc.guess import density_from_hamiltonian, scf_cycles
from zoo.qc.level import LevelOfTheory

WATER = ([8, 1, 1], [[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]])
LEVEL = LevelOfTheory(xc="b3lyp5", basis="6-31g", grid_level=1)


pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


def test_converged_fock_guess_needs_few_cycles():
    mol = LEVEL.build_mole(*WATER)
    mf = LEVEL.build_scf(mol)
    mf.kernel()
    fock, overlap = mf.get_fock(), mf.get_ovlp()
    dm0 = density_from_hamiltonian(fock, overlap, mol.nelectron)
    np.testing.assert_allclose(dm0, mf.make_rdm1(), atol=1e-6)
    from_fock = scf_cycles(mol, LEVEL, dm0=dm0)
    minao = scf_cycles(mol, LEVEL)
    assert from_fock["converged"] and minao["converged"]
    assert from_fock["cycles"] <= 3 < minao["cycles"]
    assert abs(from_fock["energy"] - minao["energy"]) < 1e-8
    assert from_fock["time_s"] > 0


def test_torch_density_matches_numpy_and_rejects_odd_electrons():
    mol = LEVEL.build_mole(*WATER)
    mf = LEVEL.build_scf(mol)
    h, s = mf.get_hcore(), mf.get_ovlp()
    as_torch = density_from_hamiltonian(torch.as_tensor(h), s, 10)
    np.testing.assert_allclose(as_torch.numpy(), density_from_hamiltonian(h, s, 10), atol=1e-10)
    assert abs(np.trace(as_torch.numpy() @ s) - 10) < 1e-10
    with pytest.raises(ValueError, match="even number"):
        density_from_hamiltonian(h, s, 9)


def test_published_model_guess_starts_pyscf_and_refuses_another_level(monkeypatch, tmp_path):
    from zoo.interfaces import model_guess

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    name = "hamiltonian-water-b3lyp5-def2svp-v2"
    level = LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=3)
    mol = level.build_mole(*WATER)
    mf = level.build_scf(mol)
    dm0 = model_guess(name, mf)
    assert abs(np.trace(dm0 @ mol.intor("int1e_ovlp")) - 10) < 1e-8
    guessed, minao = scf_cycles(mol, level, dm0=dm0), scf_cycles(mol, level)
    assert guessed["converged"] and abs(guessed["energy"] - minao["energy"]) < 1e-8
    assert guessed["cycles"] < minao["cycles"]
    other = LevelOfTheory(xc="pbe", basis="def2-svp")
    with pytest.raises(ValueError, match="functional 'pbe'"):
        model_guess(name, other.build_scf(other.build_mole(*WATER)))
    with pytest.raises(ValueError, match="basis '6-31g'"):
        model_guess(name, LEVEL.build_mole(*WATER))


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_a_base_model_guess_builds_its_base_on_the_users_scf_object(dtype, atol, monkeypatch):
    import zoo.models.hamiltonian
    from zoo.models import EquivariantBackbone, HamiltonianModel
    from zoo.interfaces import model_guess
    from zoo.qc.guess import base_hamiltonian

    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=1, cutoff=4.0, parity="full")
    model = HamiltonianModel(backbone, level=LEVEL, head_channels=4, pair_cutoff=8.0,
                             base="minao_fock").to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    mf = LEVEL.build_scf(LEVEL.build_mole(*WATER))
    # the model reads the base built on mf, even in float32 (positions rounded), and builds none itself
    monkeypatch.setattr(zoo.models.hamiltonian, "base_hamiltonian", None)
    dm0 = model_guess(model, mf)
    monkeypatch.undo()
    # a zero network predicts the base alone: the guess is the density of F[D_MINAO]
    base = base_hamiltonian("minao_fock", *WATER, LEVEL)
    np.testing.assert_allclose(dm0, density_from_hamiltonian(base, mf.get_ovlp(), 10), atol=atol)
    assert mf.grids.coords is not None  # the grids the SCF will reuse
    assert mf.kernel(dm0=dm0) and mf.converged


@pytest.mark.parametrize("in_core", [True, False])
def test_a_base_on_a_coarser_grid_shares_the_integrals_and_differs_only_by_quadrature(in_core):
    from zoo.qc.guess import base_hamiltonian_of

    level = LevelOfTheory(xc="b3lyp5", basis="6-31g", grid_level=3)
    mf = level.build_scf(level.build_mole(*WATER))
    if not in_core:
        mf.max_memory = 0  # direct SCF, as for molecules whose integrals do not fit in memory
    coarse = base_hamiltonian_of("minao_fock", mf, grid_level=1)
    assert mf.grids.coords is None and mf.grids.level == 3  # the SCF's own grid, not built on the way
    assert (mf._eri is not None) == in_core  # the in-core integrals the SCF will reuse
    full = base_hamiltonian_of("minao_fock", mf)
    assert mf.grids.level == 3 and mf.grids.coords is not None
    difference = np.abs(coarse - full).max()
    assert 1e-9 < difference < 1e-3, difference  # another quadrature of the same Fock matrix
    np.testing.assert_allclose(base_hamiltonian_of("minao_fock", mf, grid_level=3), full, atol=1e-12)
