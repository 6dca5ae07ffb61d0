"""Compiled and exported inference: the same numbers as the eager model, for every family."""

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from torch_geometric.data import Batch

from zoo.data import AtomicData, keys
from zoo.data.transforms import ATOM_FEATURE_NAMES, MolecularGraph
from zoo.models import (
    MPNN,
    ConsistencyModel,
    EquivariantBackbone,
    ForceFieldModel,
    HamiltonianModel,
    PropertyModel,
    compile_for_inference,
    export_inputs,
    export_model,
)
from zoo.models._compile import inference_core
from zoo.qc import LevelOfTheory
from zoo.testing import toy_consistency_frames

TINY = {"channels": 4, "l_max": 1, "num_layers": 1, "cutoff": 4.0, "radial_hidden": 8}


def _close(got, expected):
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def _structures(*names, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for name in names:
        atoms = molecule(name)
        atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
        out.append(atoms)
    return out


def _batch(atoms, dtype=torch.float32):
    return Batch.from_data_list([AtomicData.from_ase(a, dtype=dtype) for a in atoms])


def _force_field():
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(["H", "C", "O"], **TINY), hidden=8)
    model.set_statistics({keys.ENERGY: {"mean": 0.3, "std": 2.0, "reference_energies": {1: -13.6, 6: -1030.0}}})
    return model.eval()


def _consistency():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "C", "N", "O"], channels=4, l_max=1, num_layers=1, cutoff=8.0, radial_hidden=8,
                                   extra_node_irreps=f"{len(ATOM_FEATURE_NAMES) + 4}x0e", edge_scalar_dim=9)
    return ConsistencyModel(backbone, hidden=8, head_hidden=4, timesteps=20, time_features=4).eval()


@pytest.fixture(scope="module")
def consistency_frames():
    frames = toy_consistency_frames(["CCO", "CC(=O)N"], perturbed=0, unlabelled=())
    return [f for f in frames if f.info["structure_kind"] == "xtb_optimized"]


def _graph(frame):
    data = AtomicData.from_ase(frame)
    data[keys.SMILES] = frame.info["smiles"]
    return MolecularGraph()(data)


# --- torch.compile -------------------------------------------------------------------------------


def test_a_compiled_force_field_matches_eager_for_new_sizes_without_recompiling():
    model = _force_field()
    first, second = _batch(_structures("CH3CH2OH", "CH3CH2OH")), _batch(_structures("CH3OH", "H2O", "CH4"))
    expected = [model(first), model(second)]
    calculator_atoms = _structures("CH3CH2OH", seed=1)[0]
    calculator_atoms.calc = model.as_calculator()
    expected_forces = calculator_atoms.get_forces()

    assert compile_for_inference(model) is model
    _close(model(first)[keys.FORCES], expected[0][keys.FORCES])
    _close(model(first)[keys.ENERGY], expected[0][keys.ENERGY])
    with torch.compiler.set_stance("fail_on_recompile"):  # other numbers of atoms, edges and molecules
        got = model(second)
        calculator_atoms.calc = model.as_calculator()  # the ASE calculator calls the compiled model
        forces = calculator_atoms.get_forces()
    _close(got[keys.FORCES], expected[1][keys.FORCES])
    _close(got[keys.ENERGY], expected[1][keys.ENERGY])
    np.testing.assert_allclose(forces, expected_forces, rtol=1e-4, atol=1e-5)

    # training runs the plain methods: a compiled graph has no double backward for force losses
    compiled = inference_core(model.backbone, "features")
    assert compiled.__func__ is not EquivariantBackbone.features
    model.train()
    assert inference_core(model.backbone, "features").__func__ is EquivariantBackbone.features


# Inductor takes minutes to generate the code of the e3nn products of these two on a CPU: they
# are compiled without code generation, which traces and runs the same graphs.


@pytest.mark.slow
def test_a_compiled_consistency_model_scores_and_generates_as_eager(consistency_frames):
    model = _consistency()
    batch = Batch.from_data_list([_graph(f) for f in consistency_frames])
    energy = model(batch)
    with torch.no_grad():
        generated = model.generate_positions(batch, mode="one_shot", seed=0)
    compile_for_inference(model, backend="aot_eager")
    compiled_energy = model(batch)
    _close(compiled_energy[keys.ENERGY], energy[keys.ENERGY])
    _close(compiled_energy[keys.FORCES], energy[keys.FORCES])
    with torch.no_grad():
        _close(model.generate_positions(batch, mode="one_shot", seed=0), generated)


@pytest.mark.slow
@pytest.mark.usefixtures("pyscf_one_thread")
def test_a_compiled_hamiltonian_model_predicts_as_eager():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=1, num_layers=1, cutoff=4.0, parity="full")
    # a minimal basis (s and p shells) keeps the products, and their compilation, small
    model = HamiltonianModel(backbone, LevelOfTheory(basis="sto-3g"), head_channels=4, pair_cutoff=8.0).double().eval()
    water = molecule("H2O")
    batch = _batch([water, *_structures("H2O")], dtype=torch.float64)
    with torch.no_grad():  # as predict runs
        expected, predicted = model(batch)[keys.HAMILTONIAN], model.predict(water)
        compile_for_inference(model, backend="aot_eager")
        torch.testing.assert_close(model(batch)[keys.HAMILTONIAN], expected, rtol=1e-9, atol=1e-10)
    got = model.predict(water)
    np.testing.assert_allclose(got["hamiltonian"], predicted["hamiltonian"], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(got["orbital_energies"], predicted["orbital_energies"], rtol=1e-9, atol=1e-10)


def test_compile_for_inference_refuses_a_module_without_tensor_cores():
    with pytest.raises(TypeError, match="no tensor core to compile"):
        compile_for_inference(torch.nn.Linear(2, 2))


# --- torch.export --------------------------------------------------------------------------------


def _exported_and_eager(model, example, other, tmp_path=None, data=None):
    """Export on ``example``; the program's predictions (saved and loaded when ``tmp_path``) on
    ``other``, a molecule of other sizes, the model's forward pass on ``data`` (default: ``other``
    with the program's neighbour list), and the program's inputs."""
    program = export_model(model, example)
    if tmp_path is not None:
        torch.export.save(program, tmp_path / "model.pt2")
        program = torch.export.load(tmp_path / "model.pt2")
    inputs = export_inputs(model, other)
    got = program.module()(*inputs.values())
    if data is None:
        data = AtomicData.from_ase(other)
        data[keys.EDGE_INDEX] = inputs["edge_index"]
    return got, model(data), inputs


@pytest.mark.slow
def test_an_exported_force_field_runs_on_other_molecules(tmp_path):
    model = _force_field()
    example, other = _structures("CH3CH2OH", "CH3OH")
    got, expected, inputs = _exported_and_eager(model, example, other, tmp_path)
    assert got[keys.FORCES].shape == (len(other), 3)
    _close(got[keys.ENERGY], expected[keys.ENERGY])
    _close(got[keys.FORCES], expected[keys.FORCES])
    # a structure given as data, in another dtype, makes the same inputs
    from_data = export_inputs(model, AtomicData.from_ase(other, dtype=torch.float64))
    assert from_data["pos"].dtype == torch.float32
    for name, value in inputs.items():
        torch.testing.assert_close(from_data[name], value)
    # the one check inside the program: an element the model does not know
    nitrogen = dict(inputs, z=inputs["z"].clone().fill_(7))
    with pytest.raises(RuntimeError, match="not supported by this model"):
        torch.export.load(tmp_path / "model.pt2").module()(*nitrogen.values())


def test_an_exported_multi_fidelity_force_field_predicts_at_the_models_level():
    # organic-dens-gfn2-xtb's kind: one energy head per level of theory, "energy" at model.level
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(["H", "C", "O"], **TINY), hidden=8, levels=["pbe", "xtb"])
    model.set_statistics({keys.ENERGY: {"mean": 0.3, "std": 2.0}})
    model.level = "xtb"
    model.eval()
    example, other = _structures("CH3CH2OH", "CH3OH")
    got, expected, inputs = _exported_and_eager(model, example, other)
    _close(got[keys.ENERGY], expected[keys.ENERGY])
    _close(got[keys.FORCES], expected[keys.FORCES])
    model.level = "pbe"  # the levels' heads differ: the program predicted xtb's
    assert not torch.allclose(model(AtomicData.from_ase(other))[keys.ENERGY], expected[keys.ENERGY])


@pytest.mark.parametrize("family", ["property", "mpnn"])
def test_an_exported_property_model_runs_on_other_molecules(family):
    torch.manual_seed(0)
    if family == "mpnn":
        model = MPNN(["H", "C", "O"], ["U0", "gap"], channels=8, num_steps=2, set2set_steps=2, edge_hidden=8)
    else:
        model = PropertyModel(EquivariantBackbone(["H", "C", "O"], **TINY), ["U0", "gap"], hidden=8)
    model.eval()
    example, other = _structures("CH3CH2OH", "CH3OH")
    got, expected, inputs = _exported_and_eager(model, example, other)
    assert sorted(got) == ["U0", "gap"]
    for target in ("U0", "gap"):
        _close(got[target], expected[target])


@pytest.mark.slow
def test_an_exported_consistency_model_scores_other_molecules(consistency_frames):
    model = _consistency()
    example, other = consistency_frames
    got, expected, inputs = _exported_and_eager(model, example, other, data=_graph(other))
    assert inputs["edge_index"].shape[1] == len(other) * (len(other) - 1)  # every pair of atoms
    for name, value in export_inputs(model, _graph(other).to("cpu")).items():  # the same from data
        torch.testing.assert_close(value, inputs[name])
    _close(got[keys.ENERGY], expected[keys.ENERGY])
    _close(got[keys.FORCES], expected[keys.FORCES])


def test_what_cannot_be_exported_says_why():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=1, num_layers=1, parity="full")
    with pytest.raises(TypeError, match="composition"):
        export_model(HamiltonianModel(backbone, head_channels=4), molecule("H2O"))
    model = _force_field()
    with pytest.raises(ValueError, match="at least 2 atoms"):
        export_model(model, Atoms("H", positions=[[0, 0, 0]]))
    crystal = Atoms("CO", positions=[[0, 0, 0], [1.2, 0, 0]], cell=[3, 3, 3], pbc=True)
    with pytest.raises(ValueError, match="periodic"):
        export_inputs(model, crystal)
