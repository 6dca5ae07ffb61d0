"""The losses of physical-consistency training: the consistency functions against a frozen copy of
the energy model and the exact Boltzmann score, and how the auxiliary losses choose their structures."""

import copy

import pytest
import torch
from torch_geometric.data import Batch

from zoo.data import AtomicData, keys
from zoo.data.transforms import ATOM_FEATURE_NAMES, MolecularGraph
from zoo.losses import (
    DiffusionDenoisingLoss,
    Forward,
    OptimalityLoss,
    Progress,
    ScoreConsistencyLoss,
    Step,
    optimality_loss,
    score_consistency_loss,
    score_target,
)
from zoo.models import ConsistencyModel, DiffusionSchedule, EquivariantBackbone
from zoo.models._diffusion import centre
from zoo.testing import toy_consistency_frames

TIME_FEATURES = 8


def _model(seed=0) -> ConsistencyModel:
    torch.manual_seed(seed)
    backbone = EquivariantBackbone(
        ["H", "C", "N", "O"], channels=8, l_max=2, num_layers=2, cutoff=8.0, num_radial=8, radial_hidden=16,
        avg_num_neighbors=8.0, extra_node_irreps=f"{len(ATOM_FEATURE_NAMES) + TIME_FEATURES}x0e", edge_scalar_dim=9,
    )
    return ConsistencyModel(backbone, hidden=16, head_hidden=8, timesteps=20, time_features=TIME_FEATURES).double()


@pytest.fixture(scope="module")
def batch():
    """Two minima and a perturbed copy of each (structure kinds ``xtb_optimized``, ``perturbed``)."""
    frames = toy_consistency_frames(["CCO", "CC(=O)N"], perturbed=1, unlabelled=())
    data = []
    for frame in frames:
        if frame.info["structure_kind"] in ("xtb_optimized", "perturbed"):
            structure = AtomicData.from_ase(frame, dtype=torch.float64)
            structure[keys.SMILES] = frame.info["smiles"]
            structure[keys.STRUCTURE_KIND] = frame.info["structure_kind"]
            data.append(MolecularGraph()(structure))
    return Batch.from_data_list(data)


def _minima(batch):
    return Batch.from_data_list([d for d in batch.to_data_list() if d.structure_kind == "xtb_optimized"])


def _times(batch, value):
    return torch.full((batch.num_graphs,), value, dtype=torch.long)


def _generator_parameters(model):
    readout = {id(p) for p in model.readout.parameters()}
    return [(name, p) for name, p in model.named_parameters() if id(p) not in readout]


def test_optimality_loss_differentiates_the_generator_through_a_frozen_energy_model(batch):
    model, minima = _model(seed=1), _minima(batch)
    t = _times(minima, 5)
    loss, gap = optimality_loss(model, minima, t, generator=torch.Generator().manual_seed(3))
    loss.backward()
    # the energy readout is the energy model's alone: no gradient at all
    assert all(p.grad is None or not p.grad.any() for p in model.readout.parameters())

    # reference: the generated structure scored by a separate, frozen copy of the energy model
    frozen = copy.deepcopy(model).requires_grad_(False)
    model.zero_grad()
    generated = model.one_shot(minima, minima.pos, t, torch.Generator().manual_seed(3))
    moved = copy.copy(minima)
    moved.pos = generated
    energy = frozen(moved, forces=False)[keys.ENERGY]
    reference_energy = frozen(minima, forces=False)[keys.ENERGY]
    assert torch.allclose(gap, (energy - reference_energy).detach(), atol=1e-10)
    assert torch.allclose(loss, ((energy - reference_energy) / minima.n_atoms).mean(), atol=1e-10)
    ((energy - reference_energy) / minima.n_atoms).mean().backward()
    expected = {name: p.grad.clone() for name, p in _generator_parameters(model)}

    model.zero_grad()
    optimality_loss(model, minima, t, generator=torch.Generator().manual_seed(3))[0].backward()
    checked = 0
    for name, p in _generator_parameters(model):
        assert torch.allclose(p.grad, expected[name], atol=1e-10, rtol=1e-7), name
        checked += bool(p.grad.abs().max() > 0)
    assert checked > 10  # the backbone and the noise head are trained by it


def test_score_consistency_loss_vanishes_for_the_boltzmann_score(batch, monkeypatch):
    model, minima = _model(seed=2), _minima(batch)
    t = _times(minima, 1)
    kT = 0.05

    def boltzmann_v(prepared, x_t, times):
        molecule = prepared.batch
        alpha, sigma = (a[molecule].unsqueeze(-1) for a in model.schedule(times))
        forces = model.frozen_energy(prepared, x_t * model.position_scale / alpha)[keys.FORCES]
        epsilon = centre(score_target(forces, alpha, sigma, model.position_scale, kT), molecule, prepared.num_graphs)
        return (epsilon - sigma * x_t) / alpha  # the v whose epsilon-hat is the target

    loss = score_consistency_loss(model, minima, t, kT, torch.Generator().manual_seed(0))
    assert loss > 1e-3
    monkeypatch.setattr(model, "predict_v", boltzmann_v)
    assert score_consistency_loss(model, minima, t, kT, torch.Generator().manual_seed(0)) < 1e-20


def test_score_target_is_the_exact_score_of_a_gaussian_at_small_noise():
    # Boltzmann distribution of E = kT |R - mu|^2 / (2 tau^2): a Gaussian, whose noised score is exact
    kT, tau, mu = 0.03, 0.4, torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64)
    schedule = DiffusionSchedule(1000)
    x = torch.randn(50, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for t in (1, 5, 20):
        alpha, sigma = schedule(torch.tensor(t))
        forces = -kT * (x / alpha - mu) / tau**2
        exact = sigma * (x - alpha * mu) / (alpha**2 * tau**2 + sigma**2)  # -sigma * score of x_t
        relative = ((score_target(forces, alpha, sigma, 1.0, kT) - exact).norm() / exact.norm()).item()
        assert relative < 1.5 * (sigma / (alpha * tau)).item() ** 2


def test_the_auxiliary_losses_choose_their_structures_and_epochs(batch):
    model = _model()
    logged = {}
    step = Step(model, batch, Forward(model(batch)), "train", Progress(epoch=1),
                log=lambda name, value, batch_size=None: logged.update({name: batch_size}))
    # the denoising loss sees the minima only: the same loss as the model's on them, same noise
    denoising = DiffusionDenoisingLoss(kinds=["xtb_optimized"])
    torch.manual_seed(5)
    value = denoising(step)
    torch.manual_seed(5)
    assert torch.equal(value, model.denoising_loss(_minima(batch)))
    assert DiffusionDenoisingLoss(kinds=["qm9_reference"])(step) is None  # no such structure here
    # evaluation draws the same noise every time, from the batch's number
    evaluation = Step(model, batch, step.forward, "val", batch_idx=3)
    assert torch.equal(denoising(evaluation), denoising(evaluation))

    optimality = OptimalityLoss(weight=0.1, start_epoch=2)
    assert not optimality.active(step) and optimality.active(Step(model, batch, step.forward, "train", Progress(epoch=2)))
    assert not OptimalityLoss(weight=0.0).active(step)  # skipped at weight 0: it costs two energy evaluations
    assert torch.isfinite(OptimalityLoss()(step)) and logged == {"train/energy_gap": 2}  # one gap per minimum
    assert torch.isfinite(ScoreConsistencyLoss()(step))


def test_bad_settings_are_clear_errors():
    with pytest.raises(ValueError, match="kT must be positive"):
        ScoreConsistencyLoss(kT=0.0)
    with pytest.raises(ValueError, match="fractions of T"):
        OptimalityLoss(max_time=1.5)
    with pytest.raises(ValueError, match="must be >= 0"):
        ScoreConsistencyLoss(weight=-1.0)
