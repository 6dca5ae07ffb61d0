import numpy as np
import pytest
import torch

from zoo.data import AtomicData, AtomicDataset, keys
from zoo.data.transforms import Standardize, SubtractReferenceEnergies, compute_statistics, fit_reference_energies

TRUE_REFS = {1: -13.6, 6: -1029.8, 7: -1485.3, 8: -2042.6}


def _synthetic(n=40, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    data = []
    for _ in range(n):
        z = rng.choice(list(TRUE_REFS), size=rng.integers(2, 9))
        energy = sum(TRUE_REFS[int(x)] for x in z) + noise * rng.normal()
        data.append(AtomicData.from_arrays(z, rng.normal(size=(z.size, 3)) * 3, dtype=torch.float64, energy=energy))
    return AtomicDataset(data)


def test_least_squares_recovers_per_element_energies_exactly():
    refs = fit_reference_energies(_synthetic())
    assert set(refs) == set(TRUE_REFS)
    for z, value in TRUE_REFS.items():
        assert refs[z] == pytest.approx(value, abs=1e-8)
    # subtracting them leaves zero (here: nothing but noise)
    subtract = SubtractReferenceEnergies(refs)
    residuals = [subtract(d.clone())[keys.ENERGY].item() for d in _synthetic(seed=1)]
    assert np.allclose(residuals, 0.0, atol=1e-7)


def test_subtraction_does_not_touch_stored_data_and_rejects_unknown_elements():
    ds = _synthetic(5)
    before = ds.raw[0][keys.ENERGY].clone()
    ds.transform = SubtractReferenceEnergies({"H": -13.6, "C": -1029.8, "7": -1485.3, 8: -2042.6})
    assert ds[0][keys.ENERGY].abs().item() < 1e-8
    assert torch.equal(ds.raw[0][keys.ENERGY], before)
    fluorine = AtomicData.from_arrays([9, 1], [[0, 0, 0], [0, 0, 0.9]], energy=-2700.0)
    with pytest.raises(ValueError, match=r"no reference energy for element\(s\) \['F'\]"):
        SubtractReferenceEnergies({1: -13.6})(fluorine)
    with pytest.raises(ValueError, match="unknown element symbol 'Qq'"):
        SubtractReferenceEnergies({"Qq": 1.0})


def test_fit_errors_on_empty_data_and_missing_keys():
    with pytest.raises(ValueError, match="dataset is empty"):
        fit_reference_energies(AtomicDataset([]))
    with pytest.raises(KeyError, match="structure 0 has no 'U0'"):
        fit_reference_energies(_synthetic(2), key=keys.U0)


def test_statistics_per_atom_and_standardize_round_trip():
    ds = _synthetic(30, noise=0.5)
    energies = np.array([d[keys.ENERGY].item() for d in ds])
    counts = np.array([d.z.numel() for d in ds])
    stats = compute_statistics(ds, keys.ENERGY)  # energy is extensive: per atom by default
    assert stats["per_atom"] and stats["count"] == 30
    assert stats["mean"] == pytest.approx((energies / counts).mean())
    assert stats["std"] == pytest.approx((energies / counts).std())
    whole = compute_statistics(ds, keys.ENERGY, per_atom=False)
    assert whole["mean"] == pytest.approx(energies.mean())
    forces = AtomicData.from_arrays([1, 1], np.zeros((2, 3)), forces=[[1.0, 2, 3], [4, 5, 6]])
    assert compute_statistics([forces], keys.FORCES)["mean"] == pytest.approx(3.5)

    standardize = Standardize([keys.ENERGY]).fit(ds)
    data = ds[3].clone()
    scaled = standardize(data.clone())
    expected = (energies[3] - stats["mean"] * counts[3]) / stats["std"]
    assert scaled[keys.ENERGY].item() == pytest.approx(expected)
    assert standardize.inverse(scaled)[keys.ENERGY].item() == pytest.approx(energies[3])
    with pytest.raises(ValueError, match="constant on the training set"):
        Standardize([keys.ENERGY], per_atom={keys.ENERGY: False}).fit([ds[0]])


def test_masked_values_are_left_out_of_statistics():
    data = list(_synthetic(n=10))
    for i, item in enumerate(data):
        item[keys.HAS_ENERGY] = torch.tensor([i % 2 == 0])
        if i % 2:
            item[keys.ENERGY] = torch.zeros_like(item[keys.ENERGY])  # no label: zeros, masked
    refs = fit_reference_energies(data)
    for z, value in refs.items():
        assert value == pytest.approx(TRUE_REFS[z], abs=1e-6)
    assert compute_statistics(data, keys.ENERGY)["count"] == 5


def test_molecular_graph_of_a_mapped_smiles():
    from zoo.data.molgraph import mapped_smiles, mol_from_smiles
    from zoo.data.transforms import ATOM_FEATURE_NAMES, MolecularGraph, molecular_graph

    graph = molecular_graph("c1ccccc1O")
    assert graph[keys.BOND_INDEX].shape == (2, 26) and graph[keys.BOND_TYPE].tolist().count(4) == 12
    features = graph[keys.ATOM_FEATURES]
    assert features.shape == (13, len(ATOM_FEATURE_NAMES))
    column = ATOM_FEATURE_NAMES.index
    assert features[:6, column("aromatic")].all() and features[:6, column("sp2")].all()
    assert features[6, column("hydrogens_1")] == 1 and features[6, column("degree_2")] == 1  # the OH oxygen
    assert (features[7:, column("degree_1")] == 1).all()  # hydrogens
    # every atom has exactly one value per one-hot group
    assert (features[:, 2:].sum(-1) == 4).all()

    # a frame and its mapped SMILES: the graph follows the frame's order; another order is an error
    mol = mol_from_smiles("OCC")
    order = [3, 0, 4, 1, 5, 2, 6, 7, 8, 9, 10, 11][: mol.GetNumAtoms()]
    from rdkit import Chem

    shuffled = Chem.RenumberAtoms(mol, order)
    numbers = [a.GetAtomicNum() for a in shuffled.GetAtoms()]
    data = AtomicData.from_arrays(numbers, np.zeros((len(numbers), 3)))
    data[keys.SMILES] = mapped_smiles(shuffled)
    data = MolecularGraph()(data)
    bonds = {tuple(sorted(pair)) for pair in data[keys.BOND_INDEX].T.tolist()}
    assert bonds == {tuple(sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))) for b in shuffled.GetBonds()}
    with pytest.raises(ValueError, match="in this order"):
        molecular_graph("OCC", numbers)
