import copy

import numpy as np
import pytest
import torch
from ase import units
from ase.build import molecule
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.md.verlet import VelocityVerlet
from torch_geometric.data import Batch

from zoo.data import AtomicData, keys
from zoo.interfaces import ZooCalculator
from zoo.models import EquivariantBackbone, ForceFieldModel


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "C", "O"], channels=8, l_max=1, num_layers=1, cutoff=4.0, radial_hidden=16)
    return ForceFieldModel(backbone, hidden=16).double()


def _ethanols(n):
    rng = np.random.default_rng(0)
    images = []
    for _ in range(n):
        atoms = molecule("CH3CH2OH")
        atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
        images.append(atoms)
    return images


def test_calculator_matches_the_model(model):
    images = _ethanols(3) + [molecule("H2O")]
    calculator = model.as_calculator()
    assert isinstance(calculator, ZooCalculator) and calculator.dtype == torch.float64
    expected = model(Batch.from_data_list([AtomicData.from_ase(a, dtype=torch.float64) for a in images]))
    offsets = np.cumsum([0] + [len(a) for a in images])
    for i, atoms in enumerate(images):
        atoms.calc = calculator
        assert atoms.get_potential_energy() == pytest.approx(expected[keys.ENERGY][i].item(), abs=1e-10)
        np.testing.assert_allclose(atoms.get_forces(), expected[keys.FORCES][offsets[i]:offsets[i + 1]].detach(),
                                   atol=1e-10)
    # batched inference gives the same numbers in any batch size
    for batch_size in (1, 3):
        results = calculator.predict(images, batch_size=batch_size)
        assert [r["energy"] for r in results] == pytest.approx(expected[keys.ENERGY].tolist(), abs=1e-10)
        assert results[3]["forces"].shape == (3, 3)


def test_runs_ase_md(model):
    atoms = _ethanols(1)[0]
    atoms.calc = model.as_calculator()
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, 0.5 * units.fs)
    energies = []
    dynamics.attach(lambda: energies.append(atoms.get_total_energy()))
    dynamics.run(5)
    assert len(energies) == 6 and np.isfinite(energies).all()
    # conservative forces: NVE total energy drifts far less than the kinetic energy (~0.3 eV)
    assert np.ptp(energies) < 0.05


def _finite_difference_forces(energy, atoms, h=1e-4):
    """-dE/dr of ``energy(atoms)`` by central differences, every coordinate."""
    forces = np.zeros((len(atoms), 3))
    for atom in range(len(atoms)):
        for axis in range(3):
            moved = []
            for sign in (1, -1):
                displaced = atoms.copy()
                displaced.positions[atom, axis] += sign * h
                moved.append(energy(displaced))
            forces[atom, axis] = -(moved[0] - moved[1]) / (2 * h)
    return forces


def _energy_of(calculator):
    return lambda atoms: calculator.predict([atoms])[0]["energy"]


@pytest.mark.parametrize("model_dtype, calculator_dtype",
                         [(torch.float32, torch.float64), (torch.float64, torch.float32)])
def test_the_calculator_casts_a_copy_of_the_model_both_ways(model_dtype, calculator_dtype):
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "C", "O"], channels=8, l_max=1, num_layers=1, cutoff=4.0, radial_hidden=16)
    model = ForceFieldModel(backbone, hidden=16).to(model_dtype).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calculator = model.as_calculator(dtype=calculator_dtype)
    assert calculator.dtype == calculator_dtype and calculator.model is not model
    atoms = _ethanols(1)[0]
    (result,) = calculator.predict([atoms])
    # the caller's model is untouched: same dtype, same weights, still training
    assert next(model.parameters()).dtype == model_dtype and model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    # forces against finite differences of the energy in float64
    reference = _finite_difference_forces(_energy_of(copy.deepcopy(model).double().as_calculator()), atoms)
    tolerance = 1e-7 if calculator_dtype == torch.float64 else 1e-4  # float32 rounds the weights and the sums
    np.testing.assert_allclose(result["forces"], reference, atol=tolerance * max(1.0, np.abs(reference).max()))


def test_a_calculator_in_the_models_dtype_evaluates_the_model_itself(model):
    calculator = model.train().as_calculator()
    assert calculator.model is model  # later changes to the weights show
    calculator.predict(_ethanols(1))
    assert model.training  # evaluated in eval mode, then given its mode back
    model.eval()
