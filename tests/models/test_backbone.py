import math

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from e3nn import o3
from torch_geometric.data import Batch

from zoo.data import AtomicData, RadiusGraph, keys
from zoo.models import BackboneOutput, EquivariantBackbone, ForceFieldModel
from zoo.testing import assert_backbone_equivariant, wigner_D

SMALL = dict(elements=["H", "C", "N", "O"], channels=8, l_max=2, num_layers=2, cutoff=4.0, radial_hidden=16)


def _molecules(dtype=torch.float32, names=("CH3CH2OH", "CH3NO2")):
    # displaced from the symmetric geometries so that no irrep vanishes by symmetry
    rng = np.random.default_rng(0)
    data = []
    for name in names:
        atoms = molecule(name)
        atoms.positions += 0.1 * rng.standard_normal(atoms.positions.shape)
        data.append(AtomicData.from_ase(atoms, dtype=dtype))
    return data


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {parity: EquivariantBackbone(**SMALL, parity=parity) for parity in ("natural", "full")}


@pytest.fixture(scope="module")
def many_body():
    torch.manual_seed(0)
    return EquivariantBackbone(**SMALL, parity="full", interaction="many_body", correlation=3)


@pytest.fixture(scope="module")
def extra_model():
    torch.manual_seed(0)
    return EquivariantBackbone(**SMALL, extra_node_irreps="1x1o").double()


def _block_norms(model, features):
    return [features[:, s].norm().item() for s in model.irreps_out.slices()]


@pytest.mark.parametrize("parity", ["natural", "full"])
def test_output_layout(models, parity):
    model = models[parity]
    assert model.irreps_out == (o3.Irreps("8x0e+8x1o+8x2e") if parity == "natural"
                                else o3.Irreps("8x0e+8x1o+8x1e+8x2o+8x2e"))
    batch = Batch.from_data_list(_molecules())
    out = model(batch)
    assert isinstance(out, BackboneOutput)
    n_atoms, n_edges = batch.num_nodes, out.edge_index.shape[1]
    assert out.node_features.shape == (n_atoms, model.irreps_out.dim)
    assert out.edge_vectors.shape == (n_edges, 3)
    assert out.edge_sh.shape == (n_edges, 9)
    assert out.edge_radial.shape == (n_edges, 8)
    assert out.species.tolist() == [model.element_index.atomic_numbers.index(z) for z in batch.z.tolist()]
    assert (out.edge_vectors.norm(dim=-1) < 4.0).all()
    # every irrep, the pseudo-tensors of "full" included, carries signal
    assert min(_block_norms(model, out.node_features)) > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("parity", ["natural", "full"])
def test_equivariance(models, parity, dtype):
    model = models[parity].to(dtype)
    try:
        batch = Batch.from_data_list(_molecules(dtype))
        errors = assert_backbone_equivariant(model, batch, generator=torch.Generator().manual_seed(1))
    finally:
        model.float()
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_many_body_equivariance(many_body, dtype):
    model = many_body.to(dtype)
    try:
        batch = Batch.from_data_list(_molecules(dtype))
        errors = assert_backbone_equivariant(model, batch, generator=torch.Generator().manual_seed(5))
    finally:
        model.float()
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}


def test_many_body_layout_and_parameters(many_body, models):
    model, two_body = many_body, models["full"]
    assert model.irreps_out == two_body.irreps_out
    out = model(Batch.from_data_list(_molecules()))
    assert out.node_features.shape[1] == model.irreps_out.dim
    assert min(_block_norms(model, out.node_features)) > 1e-3
    # the product basis's weights exist only with the option, so two-body state dicts are unchanged
    many_keys, two_keys = set(model.state_dict()), set(two_body.state_dict())
    assert two_keys < many_keys
    assert {key.split(".")[2] for key in many_keys - two_keys} == {"product_basis"}


@pytest.mark.parametrize("interaction", ["two_body", "many_body"])
def test_earlier_scalars_are_the_earlier_layers_invariants_and_stay_equivariant(models, interaction):
    torch.manual_seed(0)
    model = EquivariantBackbone(**{**SMALL, "num_layers": 3}, interaction=interaction, earlier_scalars=True).double()
    assert model.irreps_out == o3.Irreps("8x0e+8x1o+8x2e+16x0e")
    batch = Batch.from_data_list(_molecules(torch.float64))
    errors = assert_backbone_equivariant(model, batch, generator=torch.Generator().manual_seed(2))
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}
    # the same parameters without the option: the last layer's features, and its first layers' scalars
    plain = EquivariantBackbone(**{**SMALL, "num_layers": 3}, interaction=interaction).double()
    plain.load_state_dict(model.state_dict())
    with_scalars, last = model(batch).node_features, plain(batch).node_features
    torch.testing.assert_close(with_scalars[:, :last.shape[1]], last)
    first = EquivariantBackbone(**{**SMALL, "num_layers": 1}, interaction=interaction).double()
    first.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(("interactions.1", "interactions.2"))})
    torch.testing.assert_close(with_scalars[:, last.shape[1]:last.shape[1] + 8], first(batch).node_features[:, :8])


@pytest.mark.parametrize("interaction", ["two_body", "many_body"])
def test_one_layer_sees_angles_only_with_many_body(interaction):
    """Body order: with one interaction, a two-body layer's invariants for an atom are sums over
    single neighbours (distances only; the gate and self-connection act on those sums), while the
    product basis couples pairs of neighbours, so bending two bonds at fixed lengths changes them."""
    torch.manual_seed(0)
    model = EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=1, cutoff=4.0, radial_hidden=8,
                                avg_num_neighbors=2.0, interaction=interaction).double()
    invariants = []
    for angle in (90.0, 120.0):
        bent = [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [math.cos(math.radians(angle)), math.sin(math.radians(angle)), 0.0]]
        features = model(AtomicData.from_arrays([8, 1, 1], bent, dtype=torch.float64)).node_features
        invariants.append(features[0, model.irreps_out.slices()[0]])  # the oxygen's scalars
    change = (invariants[0] - invariants[1]).abs().max()
    if interaction == "two_body":
        assert change < 1e-12
    else:
        assert change > 1e-4


def test_many_body_force_field_forces_match_finite_differences():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "C", "O"], channels=4, l_max=2, num_layers=2, cutoff=4.0, radial_hidden=8,
                                   interaction="many_body", correlation=3)
    model = ForceFieldModel(backbone, hidden=8).double()
    data = _molecules(torch.float64, ("CH3OH",))[0]
    forces = model(data)[keys.FORCES]
    step = 1e-5
    for atom, axis in [(0, 0), (1, 2), (3, 1), (5, 0)]:
        energies = []
        for sign in (1, -1):
            moved = data.clone()
            moved.pos[atom, axis] += sign * step
            energies.append(model(moved)[keys.ENERGY].item())
        numeric = -(energies[0] - energies[1]) / (2 * step)
        assert forces[atom, axis].item() == pytest.approx(numeric, abs=1e-8)


def test_periodic_structure_equivariance(models):
    atoms = bulk("NaCl", "rocksalt", a=4.0).repeat((1, 1, 2))
    atoms.numbers[:] = [1, 8, 1, 8]  # elements the model knows, on a periodic lattice
    atoms.positions += 0.1 * np.random.default_rng(0).standard_normal(atoms.positions.shape)
    data = AtomicData.from_ase(atoms, dtype=torch.float64)
    model = models["natural"].double()
    try:
        out = model(data)
        assert out.edge_index.shape[1] > 2 * len(atoms)  # periodic images are neighbours
        assert_backbone_equivariant(model, data, generator=torch.Generator().manual_seed(2))
    finally:
        model.float()


def test_extra_inputs_rotate_with_the_structure(extra_model):
    data = Batch.from_data_list(_molecules(torch.float64))
    vectors = torch.randn(data.num_nodes, 3, dtype=torch.float64)
    assert_backbone_equivariant(extra_model, data, vectors, generator=torch.Generator().manual_seed(3))


def test_extra_inputs_change_the_output(extra_model):
    data = _molecules(torch.float64)[0]
    n = data.num_nodes
    plain = extra_model(data).node_features
    assert torch.equal(plain, extra_model(data, torch.zeros(n, 3, dtype=torch.float64)).node_features)
    changed = extra_model(data, torch.randn(n, 3, dtype=torch.float64)).node_features
    assert (changed - plain).abs().max() > 1e-3


def test_cartesian_vectors_are_1o_features_as_they_are():
    # e3nn 0.6's l=1 basis is (x, y, z): forces can be passed to extra_node_irreps="1x1o" directly
    rotation = o3.rand_matrix(dtype=torch.float64)
    assert torch.allclose(wigner_D("1x1o", rotation), rotation, atol=1e-12)


def test_extra_input_errors(models, extra_model):
    data = _molecules(torch.float64)[0]
    with pytest.raises(ValueError, match=r"shape \(9, 4\).*\[9, 3\]"):
        extra_model(data, torch.zeros(9, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="shape"):
        extra_model(data, torch.zeros(8, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="extra_node_irreps=None"):
        models["natural"](_molecules()[0], torch.zeros(9, 3))
    with pytest.raises(ValueError, match="empty"):
        EquivariantBackbone(["H"], channels=4, extra_node_irreps="")


def test_unknown_element_and_dtype_errors(models):
    water = AtomicData.from_ase(molecule("H2O"))
    hf = AtomicData.from_ase(molecule("HF"))
    with pytest.raises(ValueError, match="F not supported by this model.*use a model whose elements include F"):
        models["natural"](hf)
    with pytest.raises(ValueError, match=r"model\.double\(\)"):
        models["natural"](AtomicData.from_ase(molecule("H2O"), dtype=torch.float64))
    assert models["natural"](water).node_features.dtype == torch.float32


def test_batch_rows_equal_single_structures(models):
    model = models["full"]
    molecules = _molecules()
    batched = model(Batch.from_data_list(molecules)).node_features
    single = torch.cat([model(m).node_features for m in molecules])
    assert torch.allclose(batched, single, atol=1e-5)


def test_given_edges_are_used_and_far_edges_contribute_nothing(models):
    model = models["natural"]
    data = _molecules()[0]
    computed = model(data).node_features
    same = model(RadiusGraph(4.0)(data.clone()))
    wider = model(RadiusGraph(8.0)(data.clone()))
    assert torch.allclose(same.node_features, computed, atol=1e-6)
    assert wider.edge_index.shape[1] > same.edge_index.shape[1]
    assert torch.allclose(wider.node_features, computed, atol=1e-5)


def _energy(model, data):
    """A scalar made of all scalar outputs, standing in for an energy head."""
    features = model(data).node_features
    return features[:, model.irreps_out.slices()[0]].sum() + features.square().sum()


def test_forces_match_finite_differences():
    torch.manual_seed(0)
    model = EquivariantBackbone(**{**SMALL, "num_layers": 2}, parity="full").double()
    data = _molecules(torch.float64, ("CH3OH",))[0]
    pos = data.pos.clone().requires_grad_(True)
    data.pos = pos
    (grad,) = torch.autograd.grad(_energy(model, data), pos)
    step = 1e-5
    numeric = torch.zeros_like(grad)
    with torch.no_grad():
        for atom, axis in [(0, 0), (1, 2), (3, 1), (5, 0)]:
            shifted = []
            for sign in (1, -1):
                moved = data.clone()
                moved.pos = pos.detach().clone()
                moved.pos[atom, axis] += sign * step
                shifted.append(_energy(model, moved))
            numeric[atom, axis] = (shifted[0] - shifted[1]) / (2 * step)
            assert abs(numeric[atom, axis] - grad[atom, axis]) < 1e-6 * max(1.0, abs(grad[atom, axis]))


@pytest.mark.parametrize("interaction", ["two_body", "many_body"])
def test_twice_differentiable_in_positions(interaction):
    torch.manual_seed(0)
    model = EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=2, cutoff=4.0, radial_hidden=8,
                                interaction=interaction).double()
    data = _molecules(torch.float64, ("H2O",))[0]

    def energy(pos):
        moved = data.clone()
        moved.pos = pos
        return _energy(model, moved)

    assert torch.autograd.gradgradcheck(energy, (data.pos.clone().requires_grad_(True),))

    # training on forces: the force loss reaches the parameters through the position gradient
    pos = data.pos.clone().requires_grad_(True)
    (forces,) = torch.autograd.grad(-energy(pos), pos, create_graph=True)
    forces.square().sum().backward()
    radial = model.interactions[0].convolution.radial.weights[0]
    assert radial.grad is not None and radial.grad.abs().max() > 0


@pytest.mark.parametrize("interaction", ["two_body", "many_body"])
def test_smooth_when_an_atom_leaves_the_cutoff(interaction):
    torch.manual_seed(0)
    model = EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=2, cutoff=3.0, radial_hidden=8,
                                interaction=interaction).double()

    def energy_and_force(distance):
        pos = torch.tensor([[0.0, 0.0, 0.0], [distance, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
        data = AtomicData.from_arrays([8, 1], pos.detach(), dtype=torch.float64)
        data.pos = pos
        energy = _energy(model, data)
        (grad,) = torch.autograd.grad(energy, pos)
        return energy.item(), grad[1, 0].item()

    apart = energy_and_force(3.5)
    assert apart[1] == 0
    for gap in (1e-2, 1e-3):
        near = energy_and_force(3.0 - gap)
        assert abs(near[0] - apart[0]) < 1e2 * gap**3
        assert abs(near[1]) < 1e2 * gap**2


@pytest.mark.parametrize("interaction", ["two_body", "many_body"])
def test_reset_parameters_changes_the_output(interaction):
    torch.manual_seed(0)
    model = EquivariantBackbone(**SMALL, extra_node_irreps="1x1o", interaction=interaction)
    data = _molecules()[0]
    extra = torch.randn(9, 3)
    before = model(data, extra).node_features
    model.reset_parameters()
    assert not torch.allclose(before, model(data, extra).node_features)


def test_radial_options_and_bad_arguments():
    model = EquivariantBackbone(["H", "O"], channels=4, l_max=1, num_layers=1, radial_basis="gaussian", num_radial=5)
    out = model(AtomicData.from_ase(molecule("H2O")))
    assert out.edge_radial.shape == (6, 5) and model.irreps_out == o3.Irreps("4x0e+4x1o")
    with pytest.raises(ValueError, match="parity"):
        EquivariantBackbone(["H"], parity="even")
    with pytest.raises(ValueError, match="radial basis"):
        EquivariantBackbone(["H"], radial_basis="sine")
    with pytest.raises(ValueError, match="num_layers"):
        EquivariantBackbone(["H"], num_layers=0)
    with pytest.raises(ValueError, match="interaction must be one of"):
        EquivariantBackbone(["H"], interaction="three_body")
    with pytest.raises(ValueError, match="correlation"):
        EquivariantBackbone(["H"], interaction="many_body", correlation=0)


def test_built_from_a_config_like_lightning_cli():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(EquivariantBackbone, "backbone")
    config = parser.parse_object({"backbone": {
        "elements": ["H", 6, "O"], "channels": 4, "l_max": 1, "num_layers": 1, "extra_node_irreps": "1x1o",
        "interaction": "many_body", "correlation": 2,
    }})
    model = parser.instantiate_classes(config).backbone
    assert model.element_index.symbols == ["H", "C", "O"] and str(model.irreps_extra) == "1x1o"
    assert model.interactions[0].product_basis.correlation == 2


def _with_edge_features(data, cutoff=8.0, dim=3, seed=0):
    """All pairs within ``cutoff`` as given edges, with invariant features symmetric in the pair."""
    data = RadiusGraph(cutoff)(data.clone())
    i, j = data.edge_index
    table = torch.rand(int(data.z.max()) + 1, int(data.z.max()) + 1, dim, generator=torch.Generator().manual_seed(seed))
    table = table + table.transpose(0, 1)
    data.edge_features = table[data.z[i], data.z[j]].to(data.pos.dtype)
    return data


def test_edge_features_enter_the_radial_weights_and_keep_equivariance():
    torch.manual_seed(0)
    model = EquivariantBackbone(**{**SMALL, "cutoff": 8.0}, edge_scalar_dim=3).double()
    data = _with_edge_features(Batch.from_data_list(_molecules(torch.float64)))
    assert_backbone_equivariant(model, data, generator=torch.Generator().manual_seed(4))
    other = data.clone()
    other.edge_features = other.edge_features.flip(-1)
    assert (model(other).node_features - model(data).node_features).abs().max() > 1e-3
    out = model(data)
    assert out.edge_radial.shape == (data.edge_index.shape[1], 8)  # the radial basis alone


def test_edge_features_switch_off_smoothly_at_the_cutoff():
    torch.manual_seed(0)
    model = EquivariantBackbone(["H", "O"], channels=4, l_max=1, num_layers=1, cutoff=3.0, radial_hidden=8,
                                edge_scalar_dim=2).double()

    def energy(distance):
        data = AtomicData.from_arrays([8, 1], [[0.0, 0, 0], [distance, 0, 0]], dtype=torch.float64)
        data.edge_index = torch.tensor([[1, 0], [0, 1]])
        data.edge_features = torch.ones(2, 2, dtype=torch.float64)
        return _energy(model, data).item()

    apart = energy(3.5)
    for gap in (1e-2, 1e-3):
        assert abs(energy(3.0 - gap) - apart) < 1e2 * gap**3


def test_edge_feature_errors():
    model = EquivariantBackbone(["H", "O"], channels=4, l_max=1, num_layers=1, edge_scalar_dim=2)
    water = AtomicData.from_ase(molecule("H2O"))
    with pytest.raises(ValueError, match="radius graph has no edge features"):
        model(water)
    water = RadiusGraph(4.0)(water)
    with pytest.raises(ValueError, match="need 'edge_features' \\[6, 2\\]"):
        model(water)
    water.edge_features = torch.zeros(6, 3)
    with pytest.raises(ValueError, match="shape \\(6, 3\\), expected \\[6, 2\\]"):
        model(water)
    with pytest.raises(ValueError, match="edge_scalar_dim"):
        EquivariantBackbone(["H"], edge_scalar_dim=-1)
