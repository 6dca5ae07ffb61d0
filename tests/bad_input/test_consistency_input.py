"""What the consistency model cannot read is a clear error, never an energy of another molecule.

Its energy model reads a structure on the graph of a SMILES, atom by atom: atoms in another order
than the SMILES's are matched to the graph by their bonds, and a SMILES it cannot take (several
molecules, unknown elements, too many atoms) is refused with the reason.
"""

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms

from zoo.data.molgraph import mol_from_smiles
from zoo.data.transforms import ATOM_FEATURE_NAMES
from zoo.models import ConsistencyModel, EquivariantBackbone, ExtrapolationWarning

TIME_FEATURES = 8


def _model():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(
        ["H", "C", "N", "O", "F"], channels=8, l_max=1, num_layers=2, cutoff=8.0, radial_hidden=16,
        extra_node_irreps=f"{len(ATOM_FEATURE_NAMES) + TIME_FEATURES}x0e", edge_scalar_dim=9,
    )
    return ConsistencyModel(backbone, hidden=16, head_hidden=8, timesteps=20, time_features=TIME_FEATURES).double()


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def ethanol():
    """An ethanol conformer in the atom order of the SMILES 'CCO' (C, C, O, then the hydrogens)."""
    from rdkit.Chem import rdDistGeom

    mol = mol_from_smiles("CCO")
    rdDistGeom.EmbedMolecule(mol, randomSeed=3)
    return Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()], positions=mol.GetConformer().GetPositions())


def test_atoms_in_another_order_are_matched_to_the_smiles(model, ethanol):
    swapped = list(range(len(ethanol)))
    swapped[0], swapped[1] = 1, 0  # the two carbons: the element sequence still reads C, C, O, H...
    shuffled = ethanol[swapped]
    energy, forces = model.energy(ethanol, smiles="CCO", forces=True)
    energy_shuffled, forces_shuffled = model.energy(shuffled, smiles="CCO", forces=True)
    assert energy_shuffled == pytest.approx(energy, abs=1e-9)
    np.testing.assert_allclose(forces_shuffled, forces[swapped], atol=1e-9)  # in the caller's atom order
    # taken as given, the methyl carbon would sit on the oxygen's graph node: another energy
    assert abs(model.energy(shuffled, smiles="CCO", check_distances=False) - energy) > 1e-3


def test_a_structure_whose_bonds_fit_the_smiles_in_no_order(model, ethanol):
    stretched = ethanol.copy()
    stretched.positions[2] += 1.5 * (ethanol.positions[2] - ethanol.positions[1])  # the C-O bond broken
    # its elements in the order of the SMILES: scored as given, with a warning
    with pytest.warns(ExtrapolationWarning, match="do not match the SMILES 'CCO'.*taken in the order of the SMILES"):
        assert np.isfinite(model.energy(stretched, smiles="CCO"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.energy(stretched, smiles="CCO", check_distances=False)  # a generated structure, scored as it is
    # in another order as well: nothing to go by
    with pytest.raises(ValueError, match="do not match the SMILES 'CCO'.*not in the order of the SMILES either"):
        model.energy(stretched[[2, 0, 1, *range(3, len(ethanol))]], smiles="CCO")
    with pytest.raises(ValueError, match="the structure is C2H6O but the SMILES 'CC' is C2H6"):
        model.energy(ethanol, smiles="CC")


@pytest.mark.parametrize("smiles, message", [
    ("CCO.O", r"'CCO.O': one molecule per SMILES; got 2 fragments \('CCO', 'O'\)"),
    ("[Au]", r"'\[Au\]': element Au is not one the model was trained on \(H, C, N, O, F\)"),
    ("CC[Si](C)Cl", r"elements Cl, Si are not ones the model was trained on \(H, C, N, O, F\)"),
    ("C" * 10, r"'CCCCCCCCCC' has 32 atoms with hydrogens, more than this model supports \(max_atoms=29\)"),
])
def test_smiles_the_model_cannot_take(model, ethanol, smiles, message):
    with pytest.raises(ValueError, match=message):
        model.generate(smiles)
    with pytest.raises(ValueError, match=message):
        model.energy(ethanol, smiles=smiles)


def test_a_molecule_larger_than_the_training_molecules_warns(ethanol):
    from zoo.data import AtomicData

    model = _model()
    model.domain.fit([AtomicData.from_ase(ethanol, dtype=torch.float64)])  # trained on 9 atoms
    with pytest.warns(ExtrapolationWarning, match=r"structure 0: 14 atoms, more than 1.5 × the largest training "
                                                  r"structure \(9 atoms\)"):
        model.generate("CCCC", k=2, steps=2, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 13 atoms: within 1.5 × 9; its placeholder positions unchecked (and the untrained structure too)
        model.generate("CCCO", k=1, steps=2, seed=0, check=False)
        assert np.isfinite(model.energy(ethanol, smiles="CCO"))
