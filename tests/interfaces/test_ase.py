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
