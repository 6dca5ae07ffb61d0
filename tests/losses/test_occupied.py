"""The occupied-space loss: zero for the labels' occupied space, invariant where it must be, exact gradient,
and trained by HamiltonianTask on real water Hamiltonians."""

from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from zoo.data import keys, read_hamiltonian_h5
from zoo.losses import Forward, OccupiedSpaceLoss, Step, occupied_space_loss
from zoo.metrics import split_matrices

pytestmark = pytest.mark.usefixtures("pyscf_one_thread")

WATER_H5 = Path(__file__).resolve().parents[2] / "data" / "water" / "water_b3lyp5_def2svp.h5"


@pytest.fixture(scope="module")
def water():
    return read_hamiltonian_h5(WATER_H5, indices=range(4), dtype=torch.float64)


def matrices(data):
    n = int(data[keys.N_AO])
    return (data[keys.HAMILTONIAN].reshape(n, n), data[keys.OVERLAP].reshape(n, n),
            int(data[keys.N_ELECTRONS]) // 2)


def test_zero_for_the_same_occupied_space_whatever_the_virtuals_and_the_energy_scale(water):
    h, s, n_occ = matrices(water[0])
    assert float(occupied_space_loss(h, h, s, n_occ)) == pytest.approx(0.0, abs=1e-12)
    assert float(occupied_space_loss(1.7 * h - 0.2 * s, h, s, n_occ)) == pytest.approx(0.0, abs=1e-12)
    # raise the virtual levels: the occupied space, hence the loss, does not change
    from zoo.qc.eigh import generalized_eigh

    energies, c = generalized_eigh(h, s)
    shift = torch.zeros_like(energies)
    shift[n_occ:] = 0.5
    sc = s @ c
    assert float(occupied_space_loss(h + sc @ torch.diag(shift) @ sc.mT, h, s, n_occ)) == pytest.approx(0.0, abs=1e-10)
    noisy = h + 0.02 * torch.randn(h.shape, generator=torch.Generator().manual_seed(0), dtype=h.dtype)
    assert 0 < float(occupied_space_loss(0.5 * (noisy + noisy.mT), h, s, n_occ)) < 1


def test_gradient_matches_finite_differences(water):
    h, s, n_occ = matrices(water[1])
    torch.manual_seed(0)
    error = 0.05 * torch.randn_like(h)
    predicted = (h + 0.5 * (error + error.mT)).requires_grad_()
    loss = occupied_space_loss(predicted, h, s, n_occ)
    (gradient,) = torch.autograd.grad(loss, predicted)
    direction = torch.randn_like(h)
    direction = 0.5 * (direction + direction.mT)
    step = 1e-5
    with torch.no_grad():
        numeric = (occupied_space_loss(predicted + step * direction, h, s, n_occ)
                   - occupied_space_loss(predicted - step * direction, h, s, n_occ)) / (2 * step)
    assert float((gradient * direction).sum()) == pytest.approx(float(numeric), rel=1e-5)


def test_the_auxiliary_loss_averages_the_molecules_and_needs_labels(water):
    batch = Batch.from_data_list([water[0], water[1]])
    n_ao = batch[keys.N_AO].reshape(-1)
    predicted = [h + 0.01 * torch.eye(h.shape[0], dtype=h.dtype) * torch.arange(h.shape[0], dtype=h.dtype)
                 for h in split_matrices(batch[keys.HAMILTONIAN], n_ao)]
    flat = torch.cat([p.reshape(-1) for p in predicted])
    loss = OccupiedSpaceLoss(weight=0.1)
    value = loss(Step(torch.nn.Identity(), batch, Forward({keys.HAMILTONIAN: flat}), "train"))
    expected = [occupied_space_loss(p, *matrices(w)[:1], *matrices(w)[1:]) for p, w in zip(predicted, water)]
    assert float(value) == pytest.approx(float(sum(expected) / 2))
    unlabelled = Batch.from_data_list([water[0]])
    del unlabelled[keys.OVERLAP]
    assert loss(Step(torch.nn.Identity(), unlabelled, Forward({keys.HAMILTONIAN: flat[:24 * 24]}), "train")) is None


def test_hamiltonian_task_trains_on_it_beside_the_labels(water):
    from zoo.models import EquivariantBackbone, HamiltonianModel
    from zoo.tasks import HamiltonianTask

    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=1, cutoff=4.0, parity="full")
    task = HamiltonianTask(HamiltonianModel(backbone, head_channels=4, pair_cutoff=8.0).double(), occupied_weight=0.5)
    batch = Batch.from_data_list([water[2], water[3]])
    task.model.fit_onsite_reference([water[2], water[3]])
    logged = {}
    task.log = lambda name, value, **kwargs: logged.__setitem__(name, value)
    total = task._losses(batch, "train", sct=False)
    occupied = float(logged["train/occupied_loss"].detach())
    supervised = float(task.compute_loss(batch, task(batch), "train").detach())
    assert occupied > 0 and float(total.detach()) == pytest.approx(supervised + 0.5 * occupied)
    total.backward()
    assert task.model.offsite[1].weight.grad.abs().max() > 0


def test_a_float32_model_gets_the_loss_of_its_prediction_computed_in_float64(water):
    # S of def2-SVP has near-null directions: float32 eigenvectors would carry their rounding into the loss
    batch = Batch.from_data_list([water[0]])
    batch[keys.HAMILTONIAN], batch[keys.OVERLAP] = batch[keys.HAMILTONIAN].float(), batch[keys.OVERLAP].float()
    h, s, n_occ = matrices(water[0])
    predicted = (h + 0.003 * torch.randn_like(h)).float().requires_grad_()
    value = OccupiedSpaceLoss()(Step(torch.nn.Identity(), batch, Forward({keys.HAMILTONIAN: predicted.reshape(-1)}), "train"))
    exact = occupied_space_loss(predicted.detach().double(), h.float().double(), s.float().double(), n_occ)
    assert value.dtype == torch.float32
    assert float(value.detach()) == pytest.approx(float(exact), rel=1e-6)
    value.backward()
    assert predicted.grad.dtype == torch.float32 and bool(predicted.grad.isfinite().all())
