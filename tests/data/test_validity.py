import doctest
from pathlib import Path

import ase.io
import numpy as np
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from zoo.data import validity
from zoo.data.molgraph import mapped_smiles, mol_from_smiles
from zoo.data.validity import structure_validity

ROOT = Path(__file__).resolve().parents[2]


def _ethanol():
    mol = mol_from_smiles("CCO")
    AllChem.EmbedMolecule(mol, randomSeed=0)
    return mol, mol.GetConformer().GetPositions()


def test_docstring_example():
    assert doctest.testmod(validity).failed == 0


def test_qm9_reference_geometries_are_valid():
    """What the defaults are calibrated on: QM9's own B3LYP minima of the project's test molecules."""
    images = ase.io.read(ROOT / "data" / "consistency" / "qm9_test.extxyz", index=":")
    assert len(images) == 200
    invalid = [a.info["smiles"] for a in images if not structure_validity(a, a.info["smiles"]).valid]
    assert invalid == []


def test_a_compressed_bond_is_named():
    mol, positions = _ethanol()
    oxygen = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "O")
    carbon = next(n.GetIdx() for n in mol.GetAtomWithIdx(oxygen).GetNeighbors() if n.GetSymbol() == "C")
    assert structure_validity(positions, mol).valid
    moved = positions.copy()
    moved[oxygen] = positions[carbon] + 0.755 * (positions[oxygen] - positions[carbon]) / np.linalg.norm(
        positions[oxygen] - positions[carbon])  # the C-O bond of 0.755 Å the issue saw
    result = structure_validity(moved, mapped_smiles(mol))
    assert not result.valid and not result.bonds_valid
    bonds = [d for d in result.defects if d.kind == "bond"]
    assert [(d.i, d.j) for d in bonds if {d.i, d.j} == {carbon, oxygen}]
    first, second = sorted([carbon, oxygen])
    names = {carbon: "C", oxygen: "O"}
    assert f"bond {names[first]}{first + 1}-{names[second]}{second + 1} of 0.755 Å" in result.describe()


def test_a_stretched_bond_and_a_clash_are_found():
    mol, positions = _ethanol()
    stretched = positions.copy()
    hydrogen = next(a.GetIdx() for a in mol.GetAtoms() if a.GetSymbol() == "H")
    heavy = mol.GetAtomWithIdx(hydrogen).GetNeighbors()[0].GetIdx()
    stretched[hydrogen] = positions[heavy] + 1.6 * (positions[hydrogen] - positions[heavy])
    assert not structure_validity(stretched, mol).bonds_valid

    # butane folded so that hydrogens of its two ends touch
    butane = mol_from_smiles("CCCC")
    AllChem.EmbedMolecule(butane, randomSeed=1)
    xyz = butane.GetConformer().GetPositions()
    assert structure_validity(xyz, butane).valid
    hops = Chem.GetDistanceMatrix(butane)
    i, j = next((i, j) for i in range(len(xyz)) for j in range(len(xyz)) if hops[i, j] >= 5)
    folded = xyz.copy()
    folded[j] = xyz[i] + np.array([0.9, 0.0, 0.0])
    result = structure_validity(folded, butane)
    assert not result.clash_free
    assert any({d.i, d.j} == {i, j} for d in result.defects if d.kind == "clash")
    assert "clash H" in result.describe(limit=10)


def test_wrong_atoms_are_refused():
    mol, positions = _ethanol()
    with pytest.raises(ValueError, match="molecule has 9 atoms"):
        structure_validity(positions[:5], mol)
    atoms = ase.Atoms(numbers=[8] * 9, positions=positions)
    with pytest.raises(ValueError, match="not those of the molecule"):
        structure_validity(atoms, mol)
