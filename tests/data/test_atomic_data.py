import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from torch_geometric.data import Batch

from zoo.data import AtomicData, ElementIndex, keys


def test_from_ase_round_trip_and_batching():
    atoms = molecule("CH3CH2OH")
    data = AtomicData.from_ase(atoms, {keys.ENERGY: -1.5, keys.FORCES: np.ones((9, 3)), keys.DIPOLE: [0, 0, 1.0]})
    assert data[keys.ENERGY].shape == (1,)
    assert data[keys.DIPOLE].shape == (1, 3)
    back = data.to_ase()
    assert np.allclose(back.positions, atoms.positions, atol=1e-6)
    assert (back.numbers == atoms.numbers).all()
    assert "smiles" not in back.info
    # a molecular structure's graph travels with it: the mapped SMILES in info
    data[keys.SMILES] = "[C:1]([C:2]([O:3][H:9])([H:7])[H:8])([H:4])([H:5])[H:6]"
    assert data.to_ase().info["smiles"] == data[keys.SMILES]
    batch = Batch.from_data_list([data, data])
    assert batch[keys.ENERGY].shape == (2,)
    assert batch[keys.DIPOLE].shape == (2, 3)
    assert batch[keys.POSITIONS].shape == (18, 3)


def test_periodic_structure_keeps_cell():
    data = AtomicData.from_ase(bulk("Si", "diamond", 5.43))
    assert data.is_periodic
    assert data[keys.CELL].shape == (1, 3, 3)
    batch = Batch.from_data_list([data, data])
    assert batch[keys.CELL].shape == (2, 3, 3)


def test_ao_matrices_are_flattened_per_structure():
    h = torch.arange(16.0).reshape(4, 4)
    data = AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]], hamiltonian=h, n_ao=4)
    assert data[keys.HAMILTONIAN].shape == (16,)
    batch = Batch.from_data_list([data, data])
    assert batch[keys.HAMILTONIAN].shape == (32,)
    assert batch[keys.N_AO].tolist() == [4, 4]


def test_dtype_follows_request():
    data = AtomicData.from_arrays([8, 1, 1], np.eye(3), dtype=torch.float64, energy=1.0)
    assert data.pos.dtype == torch.float64 and data.energy.dtype == torch.float64


@pytest.mark.parametrize(
    "numbers, positions, message",
    [
        ([0, 1], np.zeros((2, 3)), "unknown atomic numbers"),
        ([1, 1], np.zeros((3, 3)), "positions have shape"),
        ([], np.zeros((0, 3)), "at least one atom"),
        ([1], [[np.nan, 0, 0]], "NaN"),
    ],
)
def test_bad_structures_are_clear_errors(numbers, positions, message):
    with pytest.raises(ValueError, match=message):
        AtomicData.from_arrays(numbers, positions)


def test_element_index_names_unknown_element():
    index = ElementIndex(["H", "C", "O"])
    assert index(torch.tensor([1, 6, 8, 1])).tolist() == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="element.*Cl.*not supported.*H, C, O"):
        index(torch.tensor([1, 17]))
    with pytest.raises(ValueError, match="unknown element symbol"):
        ElementIndex(["Xx"])
