import numpy as np
import pytest
import torch
from rdkit import Chem
from torch_geometric.data import Batch

from zoo.data import AtomicData, keys
from zoo.data.molgraph import mol_from_smiles
from zoo.data.transforms import ATOM_FEATURE_NAMES, MolecularGraph
from zoo.models import ConsistencyModel, DiffusionSchedule, EquivariantBackbone
from zoo.models._diffusion import centre, centred_noise
from zoo.models.consistency import etkdg_conformer, molecular_edges
from zoo.testing import assert_equivariant, toy_consistency_frames

TIME_FEATURES = 8
T = 20


def _model(dtype=torch.float64, seed=0, **kwargs) -> ConsistencyModel:
    torch.manual_seed(seed)
    backbone = EquivariantBackbone(
        ["H", "C", "N", "O"], channels=8, l_max=2, num_layers=2, cutoff=8.0, num_radial=8, radial_hidden=16,
        avg_num_neighbors=8.0, extra_node_irreps=f"{len(ATOM_FEATURE_NAMES) + TIME_FEATURES}x0e", edge_scalar_dim=9,
    )
    model = ConsistencyModel(backbone, hidden=16, head_hidden=8, timesteps=T, time_features=TIME_FEATURES, **kwargs)
    return model.to(dtype)


@pytest.fixture(scope="module")
def model():
    return _model()


def _with_graph(data, smiles):
    data[keys.SMILES] = smiles
    return MolecularGraph()(data)


@pytest.fixture(scope="module")
def batch():
    frames = toy_consistency_frames(["CCO", "CC(=O)N"], perturbed=0, unlabelled=())
    return Batch.from_data_list([_with_graph(AtomicData.from_ase(f, dtype=torch.float64), f.info["smiles"])
                                 for f in frames if f.info["structure_kind"] == "xtb_optimized"])


def _times(batch, value):
    return torch.full((batch.num_graphs,), value, dtype=torch.long)


def test_schedule_is_variance_preserving():
    for kind in ("cosine", "linear"):
        schedule = DiffusionSchedule(100, kind)
        alpha, sigma = schedule(torch.arange(101))
        assert torch.allclose(alpha**2 + sigma**2, torch.ones(101, dtype=torch.float64))
        assert alpha[0] == 1 and sigma[0] == 0 and alpha[-1] < 0.02
        assert (alpha[1:] < alpha[:-1]).all()
    assert DiffusionSchedule(4).times(4) == [4, 3, 2, 1, 0] and DiffusionSchedule(10).times(2) == [10, 5, 0]
    with pytest.raises(ValueError, match="integers in 0..4"):
        DiffusionSchedule(4)(torch.tensor([5]))
    with pytest.raises(ValueError, match="steps"):
        DiffusionSchedule(4).times(5)
    with pytest.raises(ValueError, match="schedule"):
        DiffusionSchedule(4, "sigmoid")


def test_molecular_edges_carry_bonds_and_graph_distances():
    ethanol = _with_graph(AtomicData.from_arrays([6, 6, 8, 1, 1, 1, 1, 1, 1], np.zeros((9, 3))), "CCO")
    batch = Batch.from_data_list([ethanol, ethanol])
    edge_index, features = molecular_edges(batch.n_atoms, batch.bond_index, batch.bond_type, 4, torch.float64)
    assert edge_index.shape[1] == 2 * 9 * 8 and features.shape == (144, 9)
    assert (edge_index[0] != edge_index[1]).all()
    assert ((edge_index < 9).all(0) | (edge_index >= 9).all(0)).all()  # no pair across molecules

    def pair(i, j):
        (column,) = ((edge_index[0] == j) & (edge_index[1] == i)).nonzero()[0]
        bond, distance = features[column, :5].argmax().item(), features[column, 5:].argmax().item() + 1
        return bond, distance

    # C0-C1 single bond; C0...O2 two bonds; H on C0 (atom 3) ... H on O (atom 8) four bonds or more
    assert pair(0, 1) == (1, 1) and pair(10, 9) == (1, 1)
    assert pair(0, 2) == (0, 2) and pair(3, 8) == (0, 4) and pair(3, 2) == (0, 3)
    assert features.sum(-1).eq(2).all()  # one bond class, one distance class


def test_energy_is_invariant_and_forces_equivariant(model, batch):
    generator = torch.Generator().manual_seed(0)
    assert_equivariant(lambda d: model(d)[keys.ENERGY][:, None], batch, "0e", per_atom=False, generator=generator)
    assert_equivariant(lambda d: model(d)[keys.FORCES], batch, "1x1o", generator=generator)


def test_noise_prediction_is_equivariant(model, batch):
    t = _times(batch, 7)

    def predict(data):  # at alpha x0: a shrunk molecule, as the generator sees it at time t
        prepared = model.prepare(data)
        return model.predict_v(prepared, 0.8 * model.normalise(prepared), t)

    errors = assert_equivariant(predict, batch, "1x1o", generator=torch.Generator().manual_seed(2))
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}
    v = predict(batch)
    totals = torch.zeros(2, 3, dtype=v.dtype).index_add_(0, batch.batch, v)
    assert totals.abs().max() < 1e-12  # centred per molecule


def test_forces_are_the_negative_energy_gradient(model, batch):
    forces = model(batch)[keys.FORCES].detach()
    step = 1e-5
    for atom, axis in [(0, 0), (2, 1), (5, 2), (12, 0)]:
        energies = []
        for sign in (1, -1):
            moved = batch.clone()
            moved.pos[atom, axis] += sign * step
            energies.append(model(moved, forces=False)[keys.ENERGY].sum())
        numeric = -(energies[0] - energies[1]) / (2 * step)
        assert abs(numeric - forces[atom, axis]) < 1e-6 * max(1.0, abs(float(forces[atom, axis])))


def test_ddim_is_deterministic_under_a_seed(model, batch):
    first = model.generate_positions(batch, "ddim", steps=4, seed=3)
    assert torch.equal(first, model.generate_positions(batch, "ddim", steps=4, seed=3))
    assert not torch.allclose(first, model.generate_positions(batch, "ddim", steps=4, seed=4))
    assert torch.allclose(centre(first, batch.batch, 2), first, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3, T])
def test_ddim_lands_on_the_data_for_an_exact_denoiser(model, batch, monkeypatch, steps):
    # data concentrated on one structure: the exact v-prediction gives x0-hat = x0 at every t, and
    # the deterministic reverse process (steps = T visits every t) ends exactly there
    target = model.normalise(batch)

    def exact_v(prepared, x_t, t):
        alpha, sigma = (a[prepared.batch].unsqueeze(-1) for a in model.schedule(t))
        return (alpha * x_t - target) / sigma

    monkeypatch.setattr(model, "predict_v", exact_v)
    generated = model.sample_ddim(batch, steps, torch.Generator().manual_seed(0))
    assert torch.allclose(generated, target * model.position_scale, atol=1e-9)


def _mmff_gradient(smiles, positions):
    from rdkit.Chem import rdForceFieldHelpers
    from rdkit.Geometry import Point3D

    mol = mol_from_smiles(smiles)
    conformer = Chem.Conformer(mol.GetNumAtoms())
    for i, xyz in enumerate(positions):
        conformer.SetAtomPosition(i, Point3D(*map(float, xyz)))
    mol.AddConformer(conformer, assignId=True)
    field = rdForceFieldHelpers.MMFFGetMoleculeForceField(mol, rdForceFieldHelpers.MMFFGetMoleculeProperties(mol))
    return np.abs(field.CalcGrad()).max()


def test_refinement_starts_from_diverse_mmff_minima_and_lands_on_the_data_for_an_exact_denoiser(model, monkeypatch):
    from zoo.metrics import best_rmsd
    from zoo.models._molecules import diverse_conformers

    smiles = "OCCC#N"
    starts = diverse_conformers(smiles, 2, seed=1)
    assert all(_mmff_gradient(smiles, x) < 0.05 for x in starts)  # kcal/mol/Å: minima
    assert best_rmsd(starts[0], starts[1], smiles) > 0.3  # two conformers, not one twice
    assert _mmff_gradient(smiles, etkdg_conformer(smiles, 1)) > 1.0  # ETKDG alone: no minimum
    assert _mmff_gradient(smiles, etkdg_conformer(smiles, 1, relax=True)) < 0.05

    data = model.graph_data(smiles)
    batch = Batch.from_data_list([data, data])
    target = model.normalise(batch, torch.as_tensor(np.concatenate(starts) + 0.1))
    seen = []

    def exact_v(prepared, x_t, t):
        seen.append(x_t.clone())
        alpha, sigma = (a[prepared.batch].unsqueeze(-1) for a in model.schedule(t))
        return (alpha * x_t - target) / sigma

    monkeypatch.setattr(model, "predict_v", exact_v)
    generated = model.generate_positions(batch, "refine", steps=50, start=4 / T, seed=1)
    assert len(seen) == 4  # no more steps than integer times from the start
    assert torch.allclose(generated, target * model.position_scale, atol=1e-9)
    # the first input is exactly those conformers noised to the start with the seeded noise
    alpha, sigma = (float(a) for a in model.schedule(torch.tensor(4)))
    x0 = model.normalise(batch, torch.as_tensor(np.concatenate(starts)))
    noise = centred_noise(x0, batch.batch, 2, torch.Generator().manual_seed(1))
    assert torch.allclose(seen[0], alpha * x0 + sigma * noise, atol=1e-12)


def test_a_refiner_learns_and_generates_small_noise_times_only(batch):
    refiner = _model(max_noise_time=0.25, one_shot_start=0.2)
    assert refiner.largest_time == 5
    seen = []
    original = refiner.predict_v
    refiner.predict_v = lambda prepared, x_t, t: seen.append(t) or original(prepared, x_t, t)
    for seed in range(20):
        refiner.denoising_loss(batch, generator=torch.Generator().manual_seed(seed))
    times = torch.cat(seen)
    assert int(times.min()) >= 1 and int(times.max()) == 5
    with pytest.raises(ValueError, match="learned noise times up to 5.*mode 'refine'"):
        refiner.generate("CCO", mode="ddim", steps=3)
    with pytest.raises(ValueError, match="learned noise times up to 5"):
        refiner.generate("CCO", mode="one_shot", start=0.5)
    with pytest.raises(ValueError, match="learned noise times up to 5"):
        refiner.generate("CCO", mode="refine", start=0.5)
    assert len(refiner.generate("CCO", mode="refine", start=0.25, k=2, check=False)) == 2
    # with no mode asked for, a refiner refines (from one_shot_start) and a full generator samples from noise
    assert refiner.default_mode == "refine" and _model().default_mode == "ddim"
    assert torch.equal(refiner.generate_positions(batch, seed=3),
                       refiner.generate_positions(batch, mode="refine", start=0.2, seed=3))
    with pytest.raises(ValueError, match="one_shot_start=0.3 is later than the generator learns"):
        _model(max_noise_time=0.25, one_shot_start=0.3)


def test_generate_returns_k_structures_in_smiles_order(model):
    for mode in ("ddim", "one_shot", "refine"):
        structures = model.generate("OCC#N", k=3, mode=mode, steps=3, seed=0, check=False)  # untrained
        assert len(structures) == 3
        order = [a.GetAtomicNum() for a in mol_from_smiles("OCC#N").GetAtoms()]
        for atoms in structures:
            assert atoms.numbers.tolist() == order
            # the mapped SMILES reads back in the same order
            assert [a.GetAtomicNum() for a in mol_from_smiles(atoms.info["smiles"]).GetAtoms()] == order
            assert np.isfinite(atoms.positions).all()
        assert not np.allclose(structures[0].positions, structures[1].positions)
    # an untrained generator's structure, scored as it is
    energy, forces = model.energy(structures[0], forces=True, check_distances=False)
    assert isinstance(energy, float) and forces.shape == (len(order), 3)
    assert energy == pytest.approx(model.energy(structures[0], smiles=structures[0].info["smiles"],
                                                check_distances=False))


def test_generated_structures_are_checked_for_validity(model, monkeypatch):
    import warnings

    from zoo.data.validity import InvalidStructureWarning
    from zoo.models.consistency import etkdg_conformer

    conformer = torch.as_tensor(etkdg_conformer("CCO", 0))
    for scale, valid in ((1.0, True), (0.6, False)):  # 0.6: every bond about 0.6x its length
        monkeypatch.setattr(model, "generate_positions", lambda batch, *args, scale=scale: (
            scale * conformer).repeat(batch.num_graphs, 1))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            structures = model.generate("CCO", k=2)
        assert [a.info["valid"] for a in structures] == [valid, valid]
        told = [str(w.message) for w in caught if issubclass(w.category, InvalidStructureWarning)]
        if valid:
            assert told == []
        else:
            assert len(told) == 1 and told[0].startswith("2 of 2 generated structures of 'CCO' are not physical")
            assert "x the covalent radii sum" in told[0]
    assert "valid" not in model.generate("CCO", check=False)[0].info


@pytest.mark.parametrize("smiles, message", [
    ("C1CC(", "RDKit cannot parse"),
    ("[NH4+]", "formal charge of \\+1"),
    ("CCCl", r"element Cl is not one the model was trained on \(H, C, N, O\)"),
    ("CCCCCCCCCC", "32 atoms.*max_atoms=29"),
    ("[CH3]", "radical"),
])
def test_bad_molecules_are_clear_errors(model, smiles, message):
    with pytest.raises(ValueError, match=message):
        model.generate(smiles)


def test_bad_arguments_are_clear_errors(model):
    from ase import Atoms

    with pytest.raises(ValueError, match="needs the molecular graph"):
        model.energy(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))
    with pytest.raises(ValueError, match="do not match the SMILES.*not in the order of the SMILES either"):
        model.energy(Atoms("OH2", positions=np.eye(3)), smiles="[H]O[H]")
    with pytest.raises(ValueError, match="not those of the SMILES in order"):
        model.energy(Atoms("OH2", positions=np.eye(3)), smiles="[H]O[H]", check_distances=False)
    with pytest.raises(ValueError, match="mode"):
        model.generate("CCO", mode="langevin")
    with pytest.raises(ValueError, match="no molecular graph"):
        model(AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]], dtype=torch.float64))
    backbone = EquivariantBackbone(["H", "C"], channels=4, l_max=1, num_layers=1)
    with pytest.raises(ValueError, match=f"extra_node_irreps='{len(ATOM_FEATURE_NAMES) + 16}x0e'.*edge_scalar_dim=9"):
        ConsistencyModel(backbone)


def test_reset_parameters_changes_both_heads(batch):
    model = _model(seed=4)
    t = _times(batch, 3)
    energy, v = model(batch)[keys.ENERGY], model.predict_v(model.prepare(batch), model.normalise(batch), t)
    model.reset_parameters()
    assert not torch.allclose(energy, model(batch)[keys.ENERGY])
    assert not torch.allclose(v, model.predict_v(model.prepare(batch), model.normalise(batch), t))
