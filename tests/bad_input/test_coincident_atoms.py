"""Atoms on top of each other in a user's structure are an error naming them, never NaN or nonsense.

Models build structures from placeholder or noisy positions themselves (diffusion sampling,
DeNS), so the check runs where users hand structures over, not in every AtomicData.
"""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from zoo.data import AtomicData
from zoo.data.neighbors import check_interatomic_distances
from zoo.data.readers import read_structures
from zoo.models import EquivariantBackbone, ForceFieldModel


@pytest.fixture(scope="module")
def calculator():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=8, l_max=1, num_layers=1, cutoff=4.0, radial_hidden=16)
    return ForceFieldModel(backbone, hidden=16).double().as_calculator()


def test_the_calculator_names_two_atoms_at_the_same_place(calculator):
    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.76, 0.59, 0], [0.76, 0.59, 0]])  # used to give NaN energy
    atoms.calc = calculator
    with pytest.raises(ValueError, match=r"structure 0: atoms 1 \(H\) and 2 \(H\) are 0.000 Å apart, closer than 0.5"):
        atoms.get_potential_energy()
    with pytest.raises(ValueError, match=r"structure 1: atoms 1 \(H\) and 2 \(H\)"):
        calculator.predict([molecule("H2O"), atoms])


def test_a_hydrogen_a_tenth_of_an_angstrom_from_an_oxygen():
    atoms = Atoms("OH", positions=[[0, 0, 0], [0, 0, 0.1]])
    with pytest.raises(ValueError, match=r"atoms 0 \(O\) and 1 \(H\) are 0.100 Å apart.*H2's 0.74 Å"):
        AtomicData.from_ase(atoms)


def test_normal_molecules_and_crystals_pass(calculator):
    water = molecule("H2O")
    water.calc = calculator
    assert np.isfinite(water.get_potential_energy())
    hydrogen = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])  # the shortest bond there is
    for atoms in (hydrogen, bulk("Cu", "fcc", 3.6) * (2, 2, 2), bulk("Si", "diamond", 5.43)):
        check_interatomic_distances(AtomicData.from_ase(atoms, check_distances=False))


@pytest.mark.parametrize("atoms, pair", [
    # close only through the cell boundary: the minimum-image distance counts
    (Atoms("H2", positions=[[0.1, 0, 0], [2.9, 0, 0]], cell=np.eye(3) * 3.0, pbc=True),
     r"atoms 0 \(H\) and 1 \(H\) are 0.200"),
    (Atoms("Si", cell=np.eye(3) * 0.3, pbc=True), r"atom 0 \(Si\) and its periodic image are 0.300"),
])
def test_periodic_images_count(atoms, pair):
    with pytest.raises(ValueError, match=pair):
        AtomicData.from_ase(atoms)


def test_files_read_with_ase_are_checked(tmp_path):
    path = tmp_path / "duplicated.extxyz"
    water = molecule("H2O")
    (water + water[1:2]).write(path)  # an atom pasted twice
    with pytest.raises(ValueError, match=r"duplicated.extxyz: structure 0: atoms 1 \(H\) and 3 \(H\) are 0.000 Å"):
        read_structures(path)


def test_internal_structures_may_overlap():
    # diffusion sampling starts from every atom at the origin
    data = AtomicData.from_arrays([6, 8, 1], np.zeros((3, 3)))
    assert data.pos.abs().sum() == 0
    with pytest.raises(ValueError, match="atoms 0 \\(C\\) and 1 \\(O\\) are 0.000"):
        AtomicData.from_arrays([6, 8, 1], np.zeros((3, 3)), check_distances=True)
    assert AtomicData.from_ase(Atoms("H2"), check_distances=False).pos.shape == (2, 3)
