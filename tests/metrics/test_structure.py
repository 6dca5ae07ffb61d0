import numpy as np
import pytest
import torch
from ase import Atoms

from zoo.data.molgraph import mapped_smiles, mol_from_smiles
from zoo.metrics import aligned_rmsd, best_rmsd, kabsch_align, kabsch_rmsd
from zoo.testing import random_rotation, toy_consistency_frames


@pytest.fixture(scope="module")
def ethanol():
    (frame,) = [f for f in toy_consistency_frames(["CCO"], perturbed=0) if f.info["structure_kind"] == "xtb_optimized"]
    return frame


def _moved(positions: np.ndarray, seed: int = 0) -> np.ndarray:
    rotation = random_rotation(torch.float64, generator=torch.Generator().manual_seed(seed)).numpy()
    return positions @ rotation.T + np.array([1.0, -2.0, 0.5])


def test_a_rotated_and_translated_copy_has_zero_rmsd(ethanol):
    positions = torch.as_tensor(ethanol.positions)
    moved = torch.as_tensor(_moved(ethanol.positions))
    assert kabsch_rmsd(moved, positions).item() < 1e-12
    assert torch.allclose(kabsch_align(moved, positions), positions, atol=1e-12)
    assert aligned_rmsd(Atoms(ethanol.numbers, moved.numpy()), ethanol) < 1e-12


def test_batched_rmsd_matches_a_known_displacement(ethanol):
    n = len(ethanol)
    positions = torch.as_tensor(ethanol.positions)
    displaced = positions.clone()
    displaced[:, 0] += torch.where(torch.arange(n) % 2 == 0, 0.1, -0.1)  # not removable by a rigid motion
    batch = torch.repeat_interleave(torch.arange(2), n)
    rmsd = kabsch_rmsd(torch.cat([torch.as_tensor(_moved(ethanol.positions, 1)), displaced]),
                       torch.cat([positions, positions]), batch)
    assert rmsd[0] < 1e-12
    single = kabsch_rmsd(displaced, positions)
    assert rmsd[1] == pytest.approx(single.item(), abs=1e-12) and 0.05 < single < 0.1


def test_a_mirror_image_is_not_superposed():
    # a chiral tetrahedral arrangement and its reflection: no proper rotation maps one on the other
    positions = torch.tensor([[0.0, 0, 0], [1.1, 0, 0], [-0.3, 1.0, 0], [-0.3, -0.5, 0.9], [-0.2, -0.6, -1.2]],
                             dtype=torch.float64)
    mirrored = positions * torch.tensor([-1.0, 1, 1], dtype=torch.float64)
    assert kabsch_rmsd(mirrored, positions) > 0.1


def test_best_rmsd_allows_equivalent_atoms_to_swap(ethanol):
    mol = mol_from_smiles(ethanol.info["smiles"])
    methyl = [a.GetIdx() for a in mol.GetAtomWithIdx(0).GetNeighbors() if a.GetAtomicNum() == 1]
    swapped = ethanol.copy()
    order = list(range(len(ethanol)))
    order[methyl[0]], order[methyl[1]] = order[methyl[1]], order[methyl[0]]
    swapped.positions = _moved(ethanol.positions[order])
    assert aligned_rmsd(swapped, ethanol) > 0.5  # atom by atom, two hydrogens are far from their places
    assert best_rmsd(swapped, ethanol, ethanol.info["smiles"]) < 1e-6
    assert best_rmsd(swapped.positions, ethanol.positions, mol) < 1e-6
    assert mapped_smiles(mol) == ethanol.info["smiles"]


def test_bad_inputs_are_clear_errors(ethanol):
    with pytest.raises(ValueError, match="same shape"):
        kabsch_rmsd(torch.zeros(3, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="elements"):
        best_rmsd(ethanol[::-1], ethanol, ethanol.info["smiles"])
    with pytest.raises(ValueError, match="8 atoms|9 atoms"):
        best_rmsd(ethanol.positions[:8], ethanol.positions, ethanol.info["smiles"])
