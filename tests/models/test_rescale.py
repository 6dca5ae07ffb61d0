"""Rescale modules, and loading the state dicts of models saved before them."""

import pytest
import torch

from zoo.data import AtomicData, Statistics, keys
from zoo.models import MPNN, EquivariantBackbone, ForceFieldModel, ReferenceEnergies, ScaleShift

STATISTICS = Statistics({keys.ENERGY: {"mean": -0.5, "std": 2.0, "reference_energies": {1: -13.6, 8: -2040.0}},
                         keys.FORCES: {"mean": 0.0, "std": 0.7}})


def test_scale_shift_and_reference_energies():
    rescale = ScaleShift([keys.ENERGY, keys.GAP])
    rescale.set_statistics(STATISTICS)
    assert rescale(torch.tensor([[1.0, 3.0]])).tolist() == [[1.5, 3.0]]  # gap without statistics: unchanged
    references = ReferenceEnergies([keys.ENERGY])
    references.set_statistics(STATISTICS)
    assert references(torch.tensor([8, 1])).reshape(-1).tolist() == pytest.approx([-2040.0, -13.6])
    references.set_statistics(Statistics())  # set again: the references of before are gone
    assert not references.atomref.any()


def _force_field():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=1, num_layers=1, cutoff=4.0, radial_hidden=8)
    return ForceFieldModel(backbone, hidden=8)


def test_a_state_dict_of_zoo_0_1_0_loads_into_the_rescale_modules():
    saved = _force_field()
    saved.set_statistics(STATISTICS)
    assert saved.rescale.scale.item() == pytest.approx(0.7)  # a force field scales by the forces' spread
    state = saved.state_dict()
    old = {"rescale.shift": "shift", "rescale.scale": "scale", "reference_energies.atomref": "atomref"}
    legacy = {old.get(k, k): v for k, v in state.items() if not k.startswith("domain.")}
    legacy["min_distance"] = torch.tensor(0.9)  # the first published force fields had no training domain

    model = _force_field()
    model.load_state_dict(legacy, strict=True)
    for name in old:
        assert torch.equal(model.state_dict()[name], state[name]), name
    assert torch.equal(model.domain.shortest_distance, torch.full_like(model.domain.shortest_distance, 0.9))
    water = AtomicData.from_arrays([8, 1, 1], [[0, 0, 0], [0, 0, 0.96], [0.93, 0, -0.24]])
    assert torch.allclose(model(water)[keys.ENERGY], saved(water)[keys.ENERGY])

    mpnn = MPNN(["H", "O"], ["gap"], channels=4, num_steps=1, set2set_steps=1, edge_hidden=4)
    mpnn_state = {old.get(k, k): v for k, v in mpnn.state_dict().items()}
    MPNN(["H", "O"], ["gap"], channels=4, num_steps=1, set2set_steps=1, edge_hidden=4).load_state_dict(mpnn_state)
