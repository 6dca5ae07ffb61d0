import warnings

import numpy as np
import pytest
import torch
from ase.build import molecule
from torch_geometric.data import Batch

from zoo.data import AtomicData, keys
from zoo.models import EquivariantBackbone, ExtrapolationWarning, ForceFieldModel
from zoo.models.force_field import NODE_FEATURES
from zoo.testing import assert_equivariant

SMALL = {"elements": ["H", "C", "O"], "channels": 8, "l_max": 2, "num_layers": 2, "cutoff": 4.0, "radial_hidden": 16}


def _ethanols(dtype, n=2):
    rng = np.random.default_rng(0)
    data = []
    for _ in range(n):
        atoms = molecule("CH3CH2OH")
        atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
        data.append(AtomicData.from_ase(atoms, dtype=dtype))
    return Batch.from_data_list(data)


@pytest.fixture(scope="module")
def model64():
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(**SMALL), hidden=16).double()
    # nonzero statistics, so that shift, scale and reference energies are exercised
    model.set_statistics({keys.ENERGY: {"mean": 0.3, "std": 2.0, "reference_energies": {1: -13.6, 6: -1030.0, 8: -2040.0}}})
    return model


def test_forces_are_minus_gradient_by_finite_differences():
    # no reference energies here: thousands of eV would drown the finite differences in rounding
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(**SMALL), hidden=16).double()
    batch = _ethanols(torch.float64, n=1)
    forces = model(batch)[keys.FORCES]
    h = 1e-5
    rng = np.random.default_rng(1)
    for atom, axis in zip(rng.integers(0, 9, 4), rng.integers(0, 3, 4)):
        energies = []
        for sign in (1, -1):
            moved = batch.clone()
            moved.pos[atom, axis] += sign * h
            energies.append(model(moved)[keys.ENERGY].item())
        numeric = -(energies[0] - energies[1]) / (2 * h)
        assert forces[atom, axis].item() == pytest.approx(numeric, abs=1e-8)


def test_reference_energies_and_statistics(model64):
    batch = _ethanols(torch.float64, n=1)
    energy = model64(batch)[keys.ENERGY].item()
    # 6 H, 2 C, 1 O: the reference energies dominate; the rest is of order scale * n_atoms
    reference = 6 * -13.6 + 2 * -1030.0 - 2040.0
    assert abs(energy - reference) < 2.0 * 9 * 10
    model = ForceFieldModel(EquivariantBackbone(**SMALL), hidden=16)
    model.set_statistics({keys.ENERGY: {"mean": 0.0, "std": 0.01}, keys.FORCES: {"mean": 0.0, "std": 1.5}})
    assert model.rescale.scale.item() == pytest.approx(1.5)  # the forces' spread, not the energy's


def test_energy_invariant_forces_equivariant(model64):
    batch = _ethanols(torch.float64)
    generator = torch.Generator().manual_seed(0)
    assert_equivariant(lambda d: model64(d)[keys.ENERGY][:, None], batch, "0e", per_atom=False, generator=generator)
    assert_equivariant(lambda d: model64(d)[keys.FORCES], batch, "1x1o", generator=generator)


def test_float32_and_float64_agree():
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(**SMALL), hidden=16)
    out32 = model(_ethanols(torch.float32))
    out64 = model.double()(_ethanols(torch.float64))
    assert out32[keys.FORCES].dtype == torch.float32 and out64[keys.FORCES].dtype == torch.float64
    torch.testing.assert_close(out32[keys.FORCES].double(), out64[keys.FORCES], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="model.double"):
        model(_ethanols(torch.float32))


def test_gradient_contexts(model64):
    batch = _ethanols(torch.float64)
    reference = model64(batch)
    assert reference[keys.FORCES].requires_grad  # grad enabled: the force loss can backpropagate
    assert not batch.pos.requires_grad  # the caller's positions are left alone
    with torch.no_grad():
        out = model64(batch)
    assert not out[keys.FORCES].requires_grad
    torch.testing.assert_close(out[keys.FORCES], reference[keys.FORCES].detach())
    with torch.inference_mode():  # Lightning's validation: inputs made in inference mode
        inferred = model64(_ethanols(torch.float64))
    torch.testing.assert_close(inferred[keys.FORCES], reference[keys.FORCES].detach())
    assert NODE_FEATURES in model64(batch, node_features=True)


def test_energy_only_and_unknown_element():
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(**SMALL), hidden=16, forces=False)
    assert set(model(_ethanols(torch.float32))) == {keys.ENERGY}
    with pytest.raises(ValueError, match="N|7"):
        model(AtomicData.from_ase(molecule("NH3")))


def test_the_calculator_warns_about_atoms_closer_than_the_training_data():
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(**SMALL), hidden=16)
    batch = _ethanols(torch.float32)
    model.domain.fit(batch.to_data_list())
    assert 0.9 < model.domain.shortest_distance.min() < 1.2  # a C-H or O-H bond
    calculator = model.as_calculator()
    squeezed = [data.to_ase() for data in batch.to_data_list()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.eval()(batch)  # the model itself never checks: training and DeNS pass off-distribution inputs
        for atoms in squeezed:
            atoms.positions *= 0.95
        calculator.predict(squeezed)  # slightly closer: within the slack
    for atoms in squeezed:
        atoms.positions *= 0.6 / 0.95
    with pytest.warns(ExtrapolationWarning, match=r"structure 0: atoms \d+ \(\w\) and \d+ \(\w\) are 0\.\d+ Å apart, "
                                                  r"under 0.9 × the shortest \w–\w distance in the training data"):
        calculator.predict(squeezed)


def test_an_old_force_field_keeps_its_shortest_distance_as_the_domain():
    model = ForceFieldModel(EquivariantBackbone(**SMALL), hidden=16)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("domain.")}
    model.load_state_dict({**state, "min_distance": torch.tensor(0.88)}, strict=True)
    assert torch.equal(model.domain.shortest_distance, torch.full((3, 3), 0.88)) and model.domain.max_atoms == 0
    model.load_state_dict({**state, "min_distance": torch.tensor(0.0)}, strict=True)  # never recorded
    assert not model.domain.shortest_distance.any()
