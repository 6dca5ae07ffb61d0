"""HamiltonianModel: transforms exactly like PySCF's matrices, symmetric, batched, clear errors."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from zoo.data import AtomicData, keys
from zoo.models import EquivariantBackbone, HamiltonianModel
from zoo.qc import ao
from zoo.qc.level import LevelOfTheory
from zoo.testing import random_rotation, transform

pytestmark = pytest.mark.usefixtures("pyscf_one_thread")

WATER = ([8, 1, 1], np.array([[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.05, -0.757, -0.469]]))


def _model(elements=("H", "O"), **kwargs):
    torch.manual_seed(0)
    backbone = EquivariantBackbone(list(elements), channels=4, l_max=2, num_layers=1, cutoff=4.0, parity="full")
    model = HamiltonianModel(backbone, head_channels=4, pair_cutoff=8.0, **kwargs).double()
    # non-zero biases and weights everywhere, so that no path is trivially zero
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def _matrix(model, data):
    n = int(np.sqrt(model(data)[keys.HAMILTONIAN].numel()))
    return model(data)[keys.HAMILTONIAN].reshape(n, n).detach()


def _pyscf_rep(z, rotation):
    """The rotation's representation on AO matrices in PySCF order: T^T D T."""
    t = torch.as_tensor(ao.pyscf_to_e3nn_matrix(z, "def2-svp"))
    return t.T @ ao.wigner_D(z, "def2-svp", rotation) @ t


@pytest.mark.parametrize(("improper", "base"), [(False, None), (True, None), (True, "minao_fock")])
def test_model_transforms_like_pyscf_matrices_of_the_rotated_molecule(improper, base):
    z, pos = WATER
    rotation = random_rotation(improper=improper, generator=torch.Generator().manual_seed(11))
    pos_rot = pos @ rotation.numpy().T
    d = _pyscf_rep(z, rotation)
    # PySCF itself: core Hamiltonian and overlap of the rotated molecule, recomputed
    level = LevelOfTheory()
    for integral in ("int1e_ovlp", "int1e_kin", "int1e_nuc"):
        before = torch.as_tensor(level.build_mole(z, pos).intor(integral))
        after = torch.as_tensor(level.build_mole(z, pos_rot).intor(integral))
        torch.testing.assert_close(after, d @ before @ d.T, atol=1e-8, rtol=0)
    # the model, in the same PySCF basis of the rotated molecule
    model = _model(base=base)
    data = AtomicData.from_arrays(z, pos, dtype=torch.float64)
    h, h_rot = _matrix(model, data), _matrix(model, AtomicData.from_arrays(z, pos_rot, dtype=torch.float64))
    assert h.abs().max() > 0.1
    # a base Hamiltonian is a DFT Fock matrix, whose XC quadrature grid is not exactly rotation
    # invariant: ~0.5 µEh at grid level 3
    torch.testing.assert_close(h_rot, d @ h @ d.T, atol=1e-8 if base is None else 2e-6, rtol=0)
    torch.testing.assert_close(h, h.T, atol=0, rtol=0)


def test_permutation_translation_and_batching():
    z, pos = WATER
    model = _model()
    data = AtomicData.from_arrays(z, pos, dtype=torch.float64)
    h = _matrix(model, data)
    # swapping the two hydrogens swaps their AO blocks (5 AOs each after O's 14)
    order = torch.tensor([*range(14), *range(19, 24), *range(14, 19)])
    swapped = transform(data, permutation=torch.tensor([0, 2, 1]))
    torch.testing.assert_close(_matrix(model, swapped), h[order][:, order], atol=1e-12, rtol=0)
    moved = transform(data, translation=torch.tensor([1.0, -2.0, 0.5]))
    torch.testing.assert_close(_matrix(model, moved), h, atol=1e-12, rtol=0)
    other = AtomicData.from_arrays([1, 8, 1], pos[[1, 0, 2]] + 0.05, dtype=torch.float64)
    batch = Batch.from_data_list([data, other])
    flat = model(batch)[keys.HAMILTONIAN].detach()
    torch.testing.assert_close(flat[:576], h.reshape(-1), atol=1e-12, rtol=0)
    torch.testing.assert_close(flat[576:], _matrix(model, other).reshape(-1), atol=1e-12, rtol=0)


def test_predict_returns_orbitals_and_a_pyscf_guess():
    z, pos = WATER
    model = _model()
    model.fit_onsite_reference([AtomicData.from_arrays(z, pos, dtype=torch.float64,
                                                       hamiltonian=_minao_fock(z, pos))])
    out = model.predict((z, pos))
    mol = model.level.build_mole(z, pos)
    np.testing.assert_allclose(out["overlap"], mol.intor("int1e_ovlp"))
    assert out["hamiltonian"].shape == (24, 24)
    assert np.trace(out["density_matrix"] @ out["overlap"]) == pytest.approx(10.0)
    assert out["homo"] == out["orbital_energies"][4] and out["gap"] == pytest.approx(out["lumo"] - out["homo"])
    from ase import Atoms

    same = model.predict(Atoms(numbers=z, positions=pos))
    np.testing.assert_allclose(same["hamiltonian"], out["hamiltonian"])


def test_predict_refuses_what_the_model_cannot_answer_and_drops_near_null_overlap_directions():
    from ase import Atoms

    z, pos = WATER
    model = _model()
    with pytest.raises(TypeError, match="predict takes an ase.Atoms or a pair"):
        model.predict("H2O")
    cation = Atoms(numbers=z, positions=pos, info={"charge": 1})
    with pytest.raises(ValueError, match="charge 1 and spin 0 .* predicts charge 0, spin 0 only"):
        model.predict(cation)
    squeezed = pos.copy()
    squeezed[1] = squeezed[0] + [0.0, 0.1, 0.0]  # an H 0.1 Å from the O
    with pytest.raises(ValueError, match=r"atoms 0 \(O\) and 1 \(H\) are 0.100 Å apart"):
        model.predict((z, squeezed))
    full = model.predict((z, pos))
    values = np.linalg.eigvalsh(full["overlap"])
    # canonical orthogonalisation: directions of S below lindep are dropped, the rest kept
    reduced = model.predict((z, pos), lindep=float(values[2]) * 1.0001)
    assert reduced["coefficients"].shape == (24, 21)
    np.testing.assert_allclose(reduced["coefficients"].T @ full["overlap"] @ reduced["coefficients"], np.eye(21), atol=1e-10)
    assert np.trace(reduced["density_matrix"] @ full["overlap"]) == pytest.approx(10.0)


def _minao_fock(z, pos):
    level = LevelOfTheory()
    mf = level.build_scf(level.build_mole(z, pos))
    return mf.get_fock(dm=mf.get_init_guess(key="minao"))


def test_onsite_reference_is_the_invariant_part_of_the_mean_block():
    z, pos = WATER
    model = _model()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    fock = torch.as_tensor(_minao_fock(z, pos))
    model.fit_onsite_reference([{keys.ATOMIC_NUMBERS: torch.tensor(z), keys.HAMILTONIAN: fock.reshape(-1)}])
    h = _matrix(model, AtomicData.from_arrays(z, pos, dtype=torch.float64))
    # with zero weights H is the reference alone: on-site only, and each O s-s block entry is kept
    assert h[:14, 14:].abs().max() == 0
    torch.testing.assert_close(h[:3, :3], fock[:3, :3], atol=1e-12, rtol=0)
    # p and d blocks keep only their rotation-invariant part: a multiple of the identity
    p_block = h[3:6, 3:6]
    torch.testing.assert_close(p_block, p_block.trace() / 3 * torch.eye(3, dtype=torch.float64), atol=1e-12, rtol=0)


def test_a_base_hamiltonian_is_what_a_zero_network_predicts_and_what_the_reference_starts_from():
    z, pos = WATER
    model = _model(base="minao_fock")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    fock = torch.as_tensor(_minao_fock(z, pos))
    other = AtomicData.from_arrays([1, 8, 1], pos[[1, 0, 2]] + 0.05, dtype=torch.float64)
    batch = Batch.from_data_list([AtomicData.from_arrays(z, pos, dtype=torch.float64), other])
    flat = model(batch)[keys.HAMILTONIAN].detach()
    torch.testing.assert_close(flat[:576], fock.reshape(-1), atol=1e-12, rtol=0)
    torch.testing.assert_close(flat[576:], torch.as_tensor(_minao_fock([1, 8, 1], pos[[1, 0, 2]] + 0.05)).reshape(-1),
                               atol=1e-12, rtol=0)
    # the reference blocks are fitted to the residual, which is zero for the base itself
    model.fit_onsite_reference([AtomicData.from_arrays(z, pos, dtype=torch.float64, hamiltonian=fock)])
    assert all(float(linear.bias.abs().max()) < 1e-12 for linear in model.onsite)
    with pytest.raises(ValueError, match="unknown base Hamiltonian 'sad'"):
        _model(base="sad")


def test_clear_errors_for_elements_basis_charge_and_level():
    with pytest.raises(ValueError, match="no functions for element"):
        HamiltonianModel(EquivariantBackbone(["H", "U"], channels=2, l_max=1, num_layers=1),
                         LevelOfTheory(basis="6-31g"))
    model = _model()
    methane = AtomicData.from_arrays([6, 1, 1, 1, 1], np.eye(5, 3) * 1.1, dtype=torch.float64)
    with pytest.raises(ValueError, match="C not supported"):
        model(methane)
    z, pos = WATER
    cation = AtomicData.from_arrays(z, pos, dtype=torch.float64, n_electrons=9)
    with pytest.raises(ValueError, match="charge 0"):
        model(cation)
    wrong_basis = AtomicData.from_arrays(z, pos, dtype=torch.float64, n_ao=25)
    with pytest.raises(ValueError, match="another basis"):
        model(wrong_basis)
    vwn_rpa = dataclasses.replace(model.metadata(), level=dataclasses.replace(model.level, xc="b3lyp"))
    with pytest.raises(ValueError, match="xc: 'b3lyp5' != 'b3lyp'"):
        model.check_data(vwn_rpa)
    model.check_data(dataclasses.replace(model.metadata(), pyscf_version="2.0.0"))  # version alone is fine


def test_published_water_model_reproduces_the_h_mae_in_its_card(monkeypatch, tmp_path):
    import zoo
    from zoo.data import read_hamiltonian_h5
    from zoo.data.splits import load_split
    from zoo.metrics import hamiltonian_mae
    from zoo.registry import load_manifest

    name = "hamiltonian-water-b3lyp5-def2svp"
    if name not in load_manifest().names():
        pytest.skip(f"{name} is not published")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    task = zoo.load(name)
    model = task.model
    assert next(model.parameters()).dtype == torch.float64  # trained in float64, loaded unrounded
    root = Path(__file__).resolve().parents[2]
    dataset = read_hamiltonian_h5(root / "data/water/water_b3lyp5_def2svp.h5", expect=model.metadata(),
                                  dtype=torch.float64)
    test = load_split(root / "benchmarks/hamiltonian/results/water_supervised_split.npz", n=len(dataset)).test
    batch = Batch.from_data_list([dataset[i] for i in test.tolist()])
    with torch.no_grad():
        mae = hamiltonian_mae(model(batch)[keys.HAMILTONIAN], batch[keys.HAMILTONIAN])["all"]
    assert mae == pytest.approx(task.registry_info.info.metrics["values"]["hamiltonian_mae_all"], abs=0.01)
