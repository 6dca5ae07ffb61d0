"""The one inference API (zoo.models._inference) on small untrained models: what predict returns, in which
shapes and units, the same in any batch size, through the task as through the model; the ASE calculator of a
model with an energy, and none for a model without one."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import PropertyNotImplementedError
from torch_geometric.data import Batch

from zoo.data import AtomicData, keys
from zoo.interfaces import ZooCalculator
from zoo.models import MPNN, EquivariantBackbone, ForceFieldModel, HamiltonianModel, Predictor, PropertyModel
from zoo.tasks import AtomisticTask, Output

BACKBONE = {"elements": ["H", "C", "O"], "channels": 4, "l_max": 1, "num_layers": 1, "cutoff": 4.0, "radial_hidden": 8}


def _structures():
    return [molecule("H2O"), molecule("CH3OH"), molecule("CH4")]


def _property_model():
    torch.manual_seed(0)
    model = PropertyModel(EquivariantBackbone(**BACKBONE), [keys.U0, keys.GAP], hidden=8)
    model.reference_energies.atomref[0, [1, 6, 8]] = torch.tensor([-13.6, -1030.0, -2040.0])  # a U0 of eV scale
    return model.eval()


@pytest.mark.parametrize("make", [_property_model, lambda: MPNN(["H", "C", "O"], [keys.U0], channels=8).eval()],
                         ids=["PropertyModel", "MPNN"])
def test_a_property_model_predicts_each_target_as_a_float_in_its_unit(make):
    model = make()
    assert isinstance(model, Predictor) and model.energy_key == keys.U0
    assert model.prediction_units == {target: "eV" for target in model.targets}  # QM9's energies, in eV
    structures = _structures()
    with torch.no_grad():
        expected = model(Batch.from_data_list([AtomicData.from_ase(a) for a in structures]))
    one = model.predict(structures[1])
    assert set(one) == set(model.prediction_units) and all(isinstance(v, float) for v in one.values())
    for batch_size in (1, 2, 32):
        many = model.predict(structures, batch_size=batch_size)
        assert len(many) == 3
        for target in model.targets:
            assert [r[target] for r in many] == pytest.approx(expected[target].tolist(), rel=1e-6)
        if batch_size == 1:  # the same computation: the same floats (other batch shapes round otherwise)
            assert one == many[1]


def test_a_model_of_u0_is_a_calculator_of_energies_only():
    model = _property_model()
    atoms = molecule("CH3OH")
    atoms.calc = model.as_calculator()
    assert atoms.calc.implemented_properties == ["energy", "free_energy"]
    assert atoms.get_potential_energy() == pytest.approx(model.predict(atoms)[keys.U0], abs=1e-6)
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_forces()
    assert atoms.calc.predict([atoms, molecule("H2O")])[1] == {"energy": pytest.approx(model.predict(molecule("H2O"))[keys.U0])}


def test_a_property_model_without_an_energy_has_no_calculator():
    torch.manual_seed(0)
    model = PropertyModel(EquivariantBackbone(**BACKBONE), [keys.GAP, "my_property"], hidden=8)
    assert model.prediction_units == {keys.GAP: "eV", "my_property": "the unit of its labels"}
    assert model.energy_key is None
    with pytest.raises(TypeError, match=r"predicts gap, my_property, no potential energy \(energy or U0\)"):
        model.as_calculator()


def test_a_force_field_predicts_forces_per_atom_in_the_order_of_the_atoms():
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(**BACKBONE), hidden=8).double()
    structures = _structures()
    results = model.predict(structures, batch_size=2)
    with torch.no_grad():
        expected = model(Batch.from_data_list([AtomicData.from_ase(a, dtype=torch.float64) for a in structures]))
    offsets = np.cumsum([0] + [len(a) for a in structures])
    for i, result in enumerate(results):
        assert set(result) == {"energy", "forces"} and result["forces"].dtype == np.float64
        assert result["energy"] == pytest.approx(float(expected[keys.ENERGY][i]), abs=1e-10)
        np.testing.assert_allclose(result["forces"], expected[keys.FORCES][offsets[i]:offsets[i + 1]], atol=1e-10)
    assert ForceFieldModel(EquivariantBackbone(**BACKBONE), forces=False).prediction_units == {"energy": "eV"}


def test_the_task_answers_through_its_model():
    task = AtomisticTask(_property_model(), [Output(keys.U0)]).eval()
    atoms = molecule("CH3OH")
    assert task.prediction_units == task.model.prediction_units
    assert task.predict(atoms) == task.model.predict(atoms)
    atoms.calc = task.as_calculator()
    assert isinstance(atoms.calc, ZooCalculator) and atoms.calc.model is task.model
    with pytest.raises(TypeError, match="PropertyModel does not generate structures; the consistency models do"):
        task.generate("CCO")


def test_a_hamiltonian_model_has_no_calculator():
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=1, cutoff=4.0, parity="full")
    model = HamiltonianModel(backbone, head_channels=4, pair_cutoff=8.0)
    assert model.energy_key is None and model.prediction_units["hamiltonian"] == "Hartree"
    with pytest.raises(TypeError, match="HamiltonianModel predicts hamiltonian, overlap, .* no potential energy"):
        model.as_calculator()
    with pytest.raises(TypeError, match="no potential energy"):
        ZooCalculator(model)
    with pytest.raises(ValueError, match="base= is the base Hamiltonian of one molecule"):
        model.predict([molecule("H2O")] * 2, base=np.zeros((24, 24)))


def test_a_task_whose_model_declares_nothing_says_so():
    task = AtomisticTask(torch.nn.Linear(1, 1), [Output(keys.ENERGY)])
    with pytest.raises(TypeError, match="Linear is no zoo.models.Predictor, so it has no predict"):
        task.predict(molecule("H2O"))
    with pytest.raises(TypeError, match="Linear is no zoo.models.Predictor"):
        ZooCalculator(torch.nn.Linear(1, 1))


def test_structures_are_atoms_or_pairs_and_bad_ones_are_named():
    model = _property_model()
    water = molecule("H2O")
    pair = (water.numbers, water.positions)
    assert model.predict(pair) == model.predict(water)
    assert model.predict([pair, water]) == [model.predict(water)] * 2
    assert model.predict([]) == []
    for wrong in ("H2O", [water, "CH4"], 3):
        with pytest.raises(TypeError, match="predict takes an ase.Atoms or a pair"):
            model.predict(wrong)
    on_top = Atoms("OH2", positions=[[0, 0, 0], [0.76, 0.59, 0], [0.76, 0.59, 0]])
    with pytest.raises(ValueError, match=r"structure 2: atoms 1 \(H\) and 2 \(H\) are 0.000 Å apart"):
        model.predict([water, water, on_top], batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1, got 0"):
        model.predict(water, batch_size=0)


def test_predict_gives_the_model_its_mode_back():
    model = _property_model().train()
    model.predict(molecule("H2O"))
    assert model.training
