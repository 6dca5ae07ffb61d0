"""The self-consistency loss of a float32 model: computed in float64, returned in the model's dtype."""

from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch

from zoo.data import keys, read_hamiltonian_h5
from zoo.losses import SelfConsistencyLoss
from zoo.qc import LevelOfTheory

pytestmark = pytest.mark.usefixtures("pyscf_one_thread")

WATER_H5 = Path(__file__).resolve().parents[2] / "data" / "water" / "water_b3lyp5_def2svp.h5"


def test_a_float32_model_gets_the_loss_of_its_prediction_computed_in_float64():
    water = read_hamiltonian_h5(WATER_H5, indices=[0], dtype=torch.float64)[0]
    n = int(water[keys.N_AO])
    h = water[keys.HAMILTONIAN].reshape(n, n)
    torch.manual_seed(0)
    noise = 0.003 * torch.randn_like(h)
    predicted = (h + noise + noise.T).float().requires_grad_()
    loss = SelfConsistencyLoss(LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=1))
    batch32 = Batch.from_data_list([water])
    batch32[keys.POSITIONS] = batch32[keys.POSITIONS].float()
    value = loss.mean_squared_residual(batch32, predicted.reshape(-1))
    exact = loss.mean_squared_residual(Batch.from_data_list([water]), predicted.detach().double().reshape(-1))
    assert value.dtype == torch.float32 and float(value.detach()) > 0
    # float32 eigenvectors of this H would be 3e-5 off
    assert float(value.detach()) == pytest.approx(float(exact), rel=1e-6)
    value.backward()
    assert predicted.grad.dtype == torch.float32 and bool(predicted.grad.isfinite().all())
