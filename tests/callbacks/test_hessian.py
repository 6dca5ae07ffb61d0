import json

import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader
from torch_geometric.utils import scatter

from zoo.callbacks import HessianSpectrum
from zoo.data import AtomicData, read_qm9
from zoo.models import MPNN, RescaledModel
from zoo.tasks import AtomisticTask, Output


class _LeastSquares(RescaledModel):
    """energy = sum over atoms of w·r + b = w·(sum of r) + n b: MSE is linear least squares in (w, b).
    Its statistics' scale (2) only enters the standardised loss, not the prediction."""

    def __init__(self, unused: bool = False):
        super().__init__(["energy"])
        self.linear = torch.nn.Linear(3, 1).double()
        self.rescale.double().scale.fill_(2.0)
        self.unused = torch.nn.Linear(1, 1) if unused else None

    def forward(self, batch):
        return {"energy": scatter(self.linear(batch.pos)[:, 0], batch.batch, reduce="sum")}


def _structures(n=16, with_energy=True):
    gen = torch.Generator().manual_seed(0)
    data = []
    for i in range(n):
        pos = torch.randn(2 + i % 3, 3, generator=gen, dtype=torch.float64)
        energy = float(pos.sum() + 0.1 * torch.randn(1, generator=gen)) if with_energy else None
        data.append(AtomicData.from_arrays([1] * len(pos), pos, dtype=torch.float64, energy=energy))
    return data


def _exact_hessian(batches, scale):
    # H of mean((D θ - y)² / s²) over (w, b) is 2 DᵀD / (N s²), D's rows (sum of r, n atoms)
    design = torch.cat([torch.cat([scatter(b.pos, b.batch, dim=0), b.n_atoms[:, None].double()], dim=1)
                        for b in batches])
    return 2 * design.T @ design / (len(design) * scale**2)


def _callback(**kwargs):
    options = dict(top_k=3, power_iterations=1000, tol=1e-12, trace_samples=400, lanczos_steps=4, num_batches=2)
    return HessianSpectrum(**{**options, **kwargs})


def test_fit_logs_the_closed_form_spectrum_of_least_squares(tmp_path):
    task = AtomisticTask(_LeastSquares(), [Output("energy", scale=3.0)], optimizer=lambda p: torch.optim.SGD(p, lr=0.01))
    callback = _callback(folder=str(tmp_path / "hessian"))
    trainer = pl.Trainer(max_epochs=2, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, callbacks=[callback])
    trainer.fit(task, DataLoader(_structures(), batch_size=4, shuffle=True))

    exact = _exact_hessian(callback.batches, 2.0)
    eigenvalues = torch.linalg.eigvalsh(exact).flip(0)
    result = callback.history[-1]["outputs"]["energy"]
    assert result["dim"] == 4 and len(callback.history) == 2
    assert torch.allclose(torch.tensor(result["eigenvalues"], dtype=torch.float64), eigenvalues[:3], rtol=1e-6)
    assert abs(result["trace"] - exact.trace().item()) < 5 * result["trace_error"]
    # four Lanczos steps on a 4x4 Hessian: the SLQ nodes are its eigenvalues
    assert torch.allclose(torch.tensor(sorted(result["slq_nodes"]), dtype=torch.float64), eigenvalues.flip(0), rtol=1e-6)
    assert sum(result["slq_weights"]) == pytest.approx(1.0)
    assert trainer.callback_metrics["hessian/energy_lambda0"].item() == pytest.approx(eigenvalues[0].item(), rel=1e-5)
    assert {"hessian/energy_trace", "hessian/energy_trace_error", "hessian/energy_lambda2"} <= set(trainer.callback_metrics)
    written = json.loads((tmp_path / "hessian" / "hessian.json").read_text())
    assert [entry["epoch"] for entry in written] == [0, 1]
    assert (tmp_path / "hessian" / "hessian_epoch001.png").stat().st_size > 0

    # the output's own loss (Output.scale = 3) instead of the model's statistics (scale 2)
    own = _callback(normalize="output", top_k=1).measure(task, callback.batches)["energy"]
    assert own["eigenvalues"][0] == pytest.approx(eigenvalues[0].item() * 4 / 9, rel=1e-6)


def test_a_parameter_subset():
    task = AtomisticTask(_LeastSquares(), [Output("energy")])
    batches = [Batch.from_data_list(_structures(8))]
    result = _callback(parameters=["model.linear.bias"], top_k=5).measure(task, batches)["energy"]
    exact = _exact_hessian(batches, 2.0)[3, 3].item()  # top_k is clipped to the one parameter
    assert result["dim"] == 1 and result["eigenvalues"] == pytest.approx([exact]) and result["trace"] == pytest.approx(exact)


def test_bad_input():
    batches = [Batch.from_data_list(_structures(4))]
    task = AtomisticTask(_LeastSquares(unused=True), [Output("energy")])
    with pytest.raises(ValueError, match=r"output 'energy'.*\['model.unused.weight', 'model.unused.bias'\] receive no gradient"):
        _callback().measure(task, batches)
    with pytest.raises(ValueError, match=r"patterns \['model.trunk.\*'\] match no trainable parameter"):
        _callback(parameters=["model.trunk.*"]).measure(task, batches)
    unlabelled = [Batch.from_data_list(_structures(4, with_energy=False))]
    with pytest.raises(ValueError, match=r"output 'energy' has no labels 'energy' in any of the 1 batches; available keys"):
        _callback(parameters=["model.linear.*"]).measure(task, unlabelled)
    with pytest.raises(ValueError, match="not outputs of the task"):
        _callback(outputs=["U0"]).measure(task, batches)
    with pytest.raises(ValueError, match="at least one batch"):
        _callback().measure(task, [])
    plain = AtomisticTask(torch.nn.ModuleDict({"linear": torch.nn.Linear(3, 1)}), [Output("energy")])
    with pytest.raises(ValueError, match="needs a model with statistics.*normalize='output'"):
        _callback().measure(plain, batches)
    with pytest.raises(ValueError, match="normalize must be one of"):
        HessianSpectrum(normalize="std")


def test_mpnn_trunk_and_head_through_the_set2set_lstm():
    # double backward through the GRU and the set2set LSTM, per output on standardised targets
    data = list(read_qm9(limit=40))[24:40]
    torch.manual_seed(0)
    model = MPNN(["H", "C", "N", "O", "F"], ["U0", "gap"], channels=8, num_steps=2, set2set_steps=2, edge_hidden=16)
    model.set_statistics({"U0": {"mean": -0.1, "std": 0.05, "per_atom": True}, "gap": {"mean": 7.0, "std": 1.3}})
    task = AtomisticTask(model, [Output("U0"), Output("gap")])
    batches = [Batch.from_data_list(data[:8]), Batch.from_data_list(data[8:])]
    trunk = ["model.embedding.*", "model.message.*", "model.update.*", "model.set2set.*"]
    fast = dict(top_k=2, power_iterations=10, trace_samples=5, lanczos_steps=8)
    results = HessianSpectrum(parameters=trunk, **fast).measure(task, batches)
    both = HessianSpectrum(parameters=[*trunk, "model.head.*"], **fast).measure(task, batches)
    assert set(results) == {"U0", "gap"}
    for name in results:
        assert both[name]["dim"] == results[name]["dim"] + sum(p.numel() for p in model.head.parameters())
        assert all(torch.isfinite(torch.tensor(results[name][k])).all() for k in ("eigenvalues", "slq_nodes"))
    assert task.training  # the mode is restored
