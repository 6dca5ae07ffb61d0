"""Molecular graphs from SMILES: atom order through mapped SMILES, bond graphs, matching 3D structures."""

import importlib.util

import numpy as np
import pytest

pytest.importorskip("rdkit")

from rdkit import Chem  # noqa: E402

from zoo.data import molgraph  # noqa: E402
from zoo.data.molgraph import (  # noqa: E402
    AROMATIC,
    SINGLE,
    bond_graph,
    formal_charge,
    mapped_smiles,
    match_to_smiles,
    mol_from_smiles,
    same_connectivity,
)

needs_qm9 = pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")


def _bonds(mol):
    return {frozenset((b.GetBeginAtomIdx(), b.GetEndAtomIdx())): str(b.GetBondType()) for b in mol.GetBonds()}


def _embedded(smiles, seed=0):
    from zoo.datagen.sampling import embed

    return embed(mol_from_smiles(smiles), seed=seed)


def test_atoms_in_smiles_order_then_hydrogens():
    mol = mol_from_smiles("OCC")
    assert [a.GetSymbol() for a in mol.GetAtoms()] == ["O", "C", "C"] + ["H"] * 6
    assert [a.GetAtomMapNum() for a in mol.GetAtoms()] == [0] * 9


def test_mapped_smiles_round_trip_keeps_a_shuffled_order():
    mol = mol_from_smiles("CC(=O)Nc1ccccc1")  # acetanilide: aromatic ring, amide, methyl hydrogens
    order = np.random.default_rng(0).permutation(mol.GetNumAtoms()).tolist()
    shuffled = Chem.RenumberAtoms(mol, order)
    text = mapped_smiles(shuffled)
    assert ":1]" in text and "[H:" in text
    back = mol_from_smiles(text)
    assert [a.GetAtomicNum() for a in back.GetAtoms()] == [a.GetAtomicNum() for a in shuffled.GetAtoms()]
    assert _bonds(back) == _bonds(shuffled)
    assert all(a.GetAtomMapNum() == 0 for a in back.GetAtoms())
    assert mapped_smiles(back) == text  # a fixed point: the order survives any number of round trips


def test_mapped_smiles_survives_extended_xyz(tmp_path):
    from zoo.data.readers.ase_io import write_extxyz
    from zoo.datagen.files import read_structures

    atoms = _embedded("NC(=O)C#N")
    atoms.info["smiles"] = mapped_smiles(mol_from_smiles("NC(=O)C#N"))
    back = read_structures(write_extxyz(tmp_path / "x.extxyz", [atoms]))[0]
    assert back.info["smiles"] == atoms.info["smiles"]
    assert same_connectivity(back, back.info["smiles"])


def test_bond_graph_of_ethanol_and_benzene():
    edge_index, bond_type = bond_graph(mol_from_smiles("CCO"))
    assert edge_index.dtype == np.int64 and bond_type.dtype == np.int64
    assert edge_index.shape == (2, 16) and (bond_type == SINGLE).all()
    assert {(int(i), int(j)) for i, j in edge_index.T} == {(int(j), int(i)) for i, j in edge_index.T}
    np.testing.assert_array_equal(edge_index[:, 0::2], edge_index[::-1, 1::2])  # bond k: columns 2k, 2k+1
    assert np.bincount(edge_index[0]).tolist() == [4, 4, 2] + [1] * 6  # C, C, O, then the hydrogens

    edge_index, bond_type = bond_graph(mol_from_smiles("c1ccccc1"))
    carbons = (edge_index < 6).all(axis=0)
    assert (bond_type[carbons] == AROMATIC).all() and carbons.sum() == 12
    assert (bond_type[~carbons] == SINGLE).all() and (~carbons).sum() == 12
    assert molgraph.BOND_TYPES == {"SINGLE": 1, "DOUBLE": 2, "TRIPLE": 3, "AROMATIC": 4}
    assert bond_graph(mol_from_smiles("[He]"))[0].shape == (2, 0)


def test_formal_charge():
    assert formal_charge(mol_from_smiles("[NH4+]")) == 1
    assert formal_charge(mol_from_smiles("[NH3+]CC([O-])=O")) == 0  # a zwitterion is neutral


def test_bad_smiles_are_clear_errors():
    with pytest.raises(ValueError, match=r"RDKit cannot parse the SMILES 'C1CC\('"):
        mol_from_smiles("C1CC(")
    with pytest.raises(ValueError, match=r"cannot parse the SMILES 'C\(C\)\(C\)\(C\)\(C\)C': .*valence"):
        mol_from_smiles("C(C)(C)(C)(C)C")
    with pytest.raises(ValueError, match="atom-map numbers"):
        mol_from_smiles("[CH3:1]O")  # some atoms mapped, others not: no order


@needs_qm9
def test_qm9_geometry_matched_into_smiles_order():
    from zoo.data.readers.qm9 import read_qm9

    # ethanol, acetamide, and a bicyclo[1.1.1]pentane whose bridgeheads (1.87 Å apart) a fixed
    # 1.3 x covalent-radii cut-off would bond
    rows = [13, 18, 641]
    for data in read_qm9(indices=rows, properties=[], dtype="float64"):
        atoms = data.to_ase()
        shuffled = atoms[np.random.default_rng(1).permutation(len(atoms))]
        shuffled.arrays["tag"] = np.arange(len(atoms))  # per-atom arrays travel with the atoms
        ordered = match_to_smiles(shuffled, data.smiles)
        mol = mol_from_smiles(data.smiles)
        assert ordered.numbers.tolist() == [a.GetAtomicNum() for a in mol.GetAtoms()]
        np.testing.assert_array_equal(ordered.positions, shuffled.positions[ordered.arrays["tag"]])
        assert sorted(map(tuple, ordered.positions)) == sorted(map(tuple, atoms.positions))
        lengths = [ordered.get_distance(*pair) for pair in _bonds(mol)]
        assert 0.9 < min(lengths) and max(lengths) < 1.7
        assert same_connectivity(ordered, data.smiles)
        assert same_connectivity(ordered, mapped_smiles(mol))


def test_rearranged_structures_are_rejected():
    atoms = _embedded("CCO")  # C0 C1 O2, H3-5 on C0, H6-7 on C1, H8 on O2
    assert same_connectivity(atoms, "CCO") and match_to_smiles(atoms, "CCO").numbers.tolist() == atoms.numbers.tolist()

    moved = atoms.copy()  # the hydroxyl hydrogen moves to the methyl carbon: CH4 + CH2O-like bonds
    c0 = moved.positions[0]
    moved.positions[8] = c0 + (c0 - moved.positions[1]) / np.linalg.norm(c0 - moved.positions[1]) * 1.09
    assert not same_connectivity(moved, "CCO")
    with pytest.raises(ValueError, match="do not match the SMILES 'CCO'.*connectivity differs"):
        match_to_smiles(moved, "CCO")

    broken = atoms.copy()  # the C-O bond stretched to 2.5 Å
    direction = broken.positions[2] - broken.positions[1]
    shift = direction / np.linalg.norm(direction) * (2.5 - np.linalg.norm(direction))
    broken.positions[[2, 8]] += shift
    assert not same_connectivity(broken, "CCO")
    with pytest.raises(ValueError, match="do not match the SMILES"):
        match_to_smiles(broken, "CCO")

    with pytest.raises(ValueError, match="the structure is C2H6O but the SMILES 'CC' is C2H6"):
        match_to_smiles(atoms, "CC")
    with pytest.raises(ValueError, match="not in the atom order of the SMILES"):
        same_connectivity(atoms[::-1], "CCO")
