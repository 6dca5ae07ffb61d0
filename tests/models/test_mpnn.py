import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.data import Batch

from zoo.data import AtomicData, RadiusGraph, read_qm9
from zoo.data.datamodule import AtomicDataModule
from zoo.models import MPNN
from zoo.tasks import AtomisticTask, Output
from zoo.testing import assert_equivariant

ELEMENTS = ["H", "C", "N", "O", "F"]


@pytest.fixture(scope="module")
def molecules():
    graph = RadiusGraph(5.0)
    dataset = read_qm9(limit=60, dtype=torch.float64)
    return [graph(dataset[i]) for i in range(20, 26)]


def _model(targets=("U0", "gap"), **kwargs):
    torch.manual_seed(0)
    return MPNN(ELEMENTS, list(targets), channels=16, num_steps=2, set2set_steps=3, edge_hidden=32,
                **kwargs).double()


def test_invariant_to_permutations_and_rigid_motions(molecules):
    model = _model()
    batch = Batch.from_data_list(molecules[:3])
    for target in model.targets:
        assert_equivariant(lambda d: model(d)[target][:, None], batch, "0e", per_atom=False,
                           generator=torch.Generator().manual_seed(1))


def test_a_molecule_alone_and_in_a_batch_agree(molecules):
    model = _model()
    batched = model(Batch.from_data_list(molecules))
    for i, molecule in enumerate(molecules):
        alone = model(Batch.from_data_list([molecule]))
        for target in model.targets:
            assert torch.allclose(alone[target], batched[target][i : i + 1], rtol=1e-10, atol=1e-10)


def test_graph_is_built_when_the_batch_has_none(molecules):
    model = _model()
    with_edges = Batch.from_data_list(molecules)
    without = Batch.from_data_list([AtomicData.from_arrays(m.z, m.pos, dtype=torch.float64) for m in molecules])
    assert torch.allclose(model(with_edges)["U0"], model(without)["U0"], atol=1e-10)


def test_statistics_give_units_and_reference_energies(molecules):
    model = _model()
    statistics = {"U0": {"mean": -2.0, "std": 0.5, "per_atom": True, "reference_energies": {1: -10.0, 6: -1000.0}},
                  "gap": {"mean": 6.0, "std": 1.5, "per_atom": False}}
    model.set_statistics(statistics)
    torch.nn.init.zeros_(model.head[-1].weight)
    torch.nn.init.zeros_(model.head[-1].bias)  # the network outputs 0: predictions are the offsets
    batch = Batch.from_data_list(molecules)
    out = model(batch)
    for i, m in enumerate(molecules):
        reference = -10.0 * (m.z == 1).sum() - 1000.0 * (m.z == 6).sum()
        assert out["U0"][i].item() == pytest.approx(float(reference) - 2.0 * len(m.z))
    assert torch.allclose(out["gap"], torch.full((len(molecules),), 6.0, dtype=torch.float64))
    # the scale multiplies the network's output, per atom for per-atom statistics
    torch.nn.init.constant_(model.head[-1].bias, 1.0)
    out = model(batch)
    assert torch.allclose(out["gap"], torch.full((len(molecules),), 7.5, dtype=torch.float64))
    n_atoms = torch.tensor([len(m.z) for m in molecules], dtype=torch.float64)
    references = torch.tensor([-10.0 * (m.z == 1).sum() - 1000.0 * (m.z == 6).sum() for m in molecules])
    assert torch.allclose(out["U0"], references + n_atoms * (0.5 - 2.0))
    # reset_parameters re-draws the weights and keeps the statistics
    model.reset_parameters()
    assert model.head[-1].weight.abs().sum() > 0 and model.rescale.scale.tolist() == [0.5, 1.5]


def test_bad_input(molecules):
    with pytest.raises(ValueError, match="at least one target"):
        MPNN(ELEMENTS, [])
    with pytest.raises(ValueError, match="aggregation"):
        MPNN(ELEMENTS, ["U0"], aggregation="max")
    with pytest.raises(ValueError, match="not supported by this model"):
        MPNN(["H", "C"], ["U0"]).double()(Batch.from_data_list(molecules))
    with pytest.raises(ValueError, match="positions are torch.float64"):
        MPNN(ELEMENTS, ["U0"])(Batch.from_data_list(molecules))


def _standardised_mse(model, batch):
    # per atom for extensive energies, as the model's statistics are
    with torch.no_grad():
        out, n_atoms = model(batch), batch.n_atoms.to(batch.pos.dtype)
        return sum(((out[t] - batch[t]) / (model.rescale.scale[i] * (n_atoms if model.per_atom[i] else 1))).square().mean()
                   for i, t in enumerate(model.targets))


def test_short_fit_reduces_the_loss(tmp_path):
    data = AtomicDataModule("qm9", reader_kwargs={"limit": 64}, cutoff=5.0, targets=["U0", "gap"],
                            standardize=["U0", "gap"], reference_energies=["U0"],
                            split={"method": "random", "sizes": [48, 16, 0], "seed": 0}, batch_size=16,
                            split_dir=str(tmp_path))
    data.setup("fit")
    torch.manual_seed(0)
    model = MPNN(ELEMENTS, ["U0", "gap"], channels=16, num_steps=2, set2set_steps=3, edge_hidden=32)
    model.set_statistics(data.statistics)
    train = Batch.from_data_list(list(data.train_dataset))
    before = _standardised_mse(model, train)
    task = AtomisticTask(model, [Output("U0", scale=0.5), Output("gap", scale=1.0)],
                         optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))
    trainer = pl.Trainer(max_epochs=30, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(task, datamodule=data)
    assert model.reference_energies.atomref[0, 6] != 0 and model.per_atom.tolist() == [True, False]
    assert _standardised_mse(model, train) < 0.5 * before


def test_hessian_vector_products_match_finite_differences(molecules):
    # the curvature analysis differentiates the MPNN twice (edge network, GRU, set2set LSTM)
    from zoo.analysis import HessianOperator, select_parameters

    model = _model(targets=["gap"])
    batch = Batch.from_data_list(molecules[:4])
    parameters = select_parameters(model, ["message.*", "update.*", "set2set.*"])

    def loss():
        return (model(batch)["gap"] - batch.gap).square().mean()

    def gradient(at):
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(at, parameters.values())
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss(), list(parameters.values()))])

    centre = torch.nn.utils.parameters_to_vector(parameters.values()).detach().clone()
    v = torch.randn(centre.numel(), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    hv = HessianOperator(loss(), parameters)(v)
    eps = 1e-5
    finite = (gradient(centre + eps * v) - gradient(centre - eps * v)) / (2 * eps)
    assert torch.allclose(hv, finite, rtol=1e-5, atol=1e-7 * finite.abs().max().item())
