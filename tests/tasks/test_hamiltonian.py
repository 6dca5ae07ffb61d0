"""HamiltonianTask: SCT vanishes at the SCF solution and trains the model; supervised fit; skipped bad steps."""

import copy
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from zoo.data import AtomicDataModule, keys, read_hamiltonian_h5
from zoo.models import EquivariantBackbone, HamiltonianModel
from zoo.qc import LevelOfTheory
from zoo.tasks import HamiltonianTask

pytestmark = pytest.mark.usefixtures("pyscf_one_thread")

WATER_H5 = Path(__file__).resolve().parents[2] / "data" / "water" / "water_b3lyp5_def2svp.h5"


@pytest.fixture(scope="module")
def water():
    return read_hamiltonian_h5(WATER_H5, indices=range(12), dtype=torch.float64)


def _task(base=None, **kwargs):
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=1, cutoff=4.0, parity="full")
    return HamiltonianTask(HamiltonianModel(backbone, head_channels=4, pair_cutoff=8.0, base=base).double(), **kwargs)


def _trainer(tmp_path, steps, **kwargs):
    return pl.Trainer(accelerator="cpu", max_steps=steps, precision="64-true", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      default_root_dir=tmp_path, num_sanity_val_steps=0, inference_mode=False, **kwargs)


def test_sct_loss_vanishes_at_the_scf_solution_and_its_gradient_reaches_the_model(water):
    task = _task(mode="sct")
    batch = Batch.from_data_list([water[0], water[1]])
    # the labels are H[D] at the converged density: self-consistent to the SCF tolerance
    assert task.self_consistency_loss(batch, batch[keys.HAMILTONIAN]).item() < 1e-12
    task.model.fit_onsite_reference([water[0], water[1]])
    loss = task.self_consistency_loss(batch, task.model(batch)[keys.HAMILTONIAN])
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in task.model.parameters() if p.grad is not None])
    assert torch.isfinite(grads).all() and grads.abs().max() > 0
    # the pair head too: the gradient goes through eigensolver and Fock response to every block
    assert task.model.offsite[1].weight.grad.abs().max() > 0
    assert len(task.sct._builders) == 2  # one Fock builder per geometry, reused
    task.self_consistency_loss(batch, batch[keys.HAMILTONIAN])
    assert len(task.sct._builders) == 2


def test_supervised_fit_reduces_the_hamiltonian_error(tmp_path):
    data = AtomicDataModule(source=str(WATER_H5), reader_kwargs={"indices": list(range(12))}, dtype="float64",
                            targets=[keys.HAMILTONIAN], split={"method": "random", "sizes": [8, 2, 2], "seed": 0},
                            split_dir=str(tmp_path), batch_size=4)
    task = _task(mode="supervised", optimizer=lambda p: torch.optim.Adam(p, lr=5e-3))
    trainer = _trainer(tmp_path, steps=30)
    before = trainer.validate(task, datamodule=data, verbose=False)[0]
    trainer.fit(task, datamodule=data)
    after = trainer.validate(task, datamodule=data, verbose=False)[0]
    # the reference blocks alone already beat zero; training must improve on the start
    assert after["val/hamiltonian_mae_all"] < 0.7 * before["val/hamiltonian_mae_all"]
    assert 0 < after["val/orbital_cosine"] <= 1 and after["val/orbital_energy_mae"] > 0
    assert (tmp_path / "split.npz").exists()


def test_the_base_hamiltonians_are_made_before_the_first_step_with_progress(tmp_path, caplog):
    data = AtomicDataModule(source=str(WATER_H5), reader_kwargs={"indices": list(range(6))}, dtype="float64",
                            targets=[keys.HAMILTONIAN], split={"method": "random", "sizes": [4, 2, 0], "seed": 0},
                            split_dir=str(tmp_path), batch_size=2)
    task = _task(base="minao_fock", mode="supervised")
    with caplog.at_level("INFO"):
        _trainer(tmp_path, steps=1).fit(task, datamodule=data)
    assert len(task.model._base_cache) == 6  # the 4 training and 2 validation structures, nothing more
    assert "base Hamiltonians (minao_fock) of the structures to fit: 6/6" in caplog.text


def test_sct_molecules_get_their_base_before_the_first_step_and_in_the_base_file(tmp_path):
    from zoo.data.readers import read_base_hamiltonians

    data = AtomicDataModule(source=str(WATER_H5), reader_kwargs={"indices": list(range(6))}, dtype="float64",
                            targets=[keys.HAMILTONIAN], split={"method": "random", "sizes": [4, 2, 0], "seed": 0},
                            split_dir=str(tmp_path), batch_size=2, unlabelled_source=str(WATER_H5),
                            unlabelled_reader_kwargs={"indices": [6, 7]})
    base_file = tmp_path / "bases.h5"
    task = _task(base="minao_fock", mode="mixed", sct_grid_level=1, base_file=str(base_file))
    _trainer(tmp_path, steps=1).fit(task, datamodule=data)
    # 4 training, 2 validation and 2 unlabelled structures, kept for the next run
    assert len(read_base_hamiltonians(base_file, "minao_fock", task.model.metadata())) == 8


def test_level_of_theory_mismatch_is_an_error(tmp_path):
    data = AtomicDataModule(source=str(WATER_H5), reader_kwargs={"indices": list(range(6))}, dtype="float64",
                            split={"method": "random", "sizes": [4, 1, 1], "seed": 0}, batch_size=2)
    backbone = EquivariantBackbone(["H", "O"], channels=2, l_max=1, num_layers=1, parity="full")
    task = HamiltonianTask(HamiltonianModel(backbone, LevelOfTheory(xc="b3lyp"), head_channels=2).double())
    with pytest.raises(ValueError, match="xc: 'b3lyp' != 'b3lyp5'"):
        _trainer(tmp_path, steps=1).fit(task, datamodule=data)


@pytest.mark.parametrize("fault", ["nan", "explode"])
def test_bad_sct_step_is_skipped_and_counted(water, tmp_path, fault):
    task = _task(mode="sct", fit_reference=False, max_sct_grad_norm=1e3, sct_grid_level=1)
    original = task.sct.mean_squared_residual

    def faulty(batch, hamiltonian):
        loss = original(batch, hamiltonian)
        return loss * float("nan") if fault == "nan" else loss * 1e12

    task.sct.mean_squared_residual = faulty
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    _trainer(tmp_path, steps=1).fit(task, DataLoader([water[0], water[1]], batch_size=2))
    assert int(task.skipped_steps) == 1
    for name, value in task.model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_mixed_mode_trains_on_labelled_and_unlabelled_loaders(water, tmp_path):
    unlabelled = [d.clone() for d in (water[4], water[5])]
    for d in unlabelled:
        for key in (keys.HAMILTONIAN, keys.OVERLAP, keys.DENSITY_MATRIX, keys.ORBITAL_ENERGIES):
            del d[key]
    task = _task(mode="mixed", sct_fraction=0.5, sct_weight=10.0, sct_grid_level=1)
    task.model.fit_onsite_reference([water[0]])
    sct_losses = []
    original = task.sct.mean_squared_residual
    task.sct.mean_squared_residual = lambda b, h: sct_losses.append(keys.HAMILTONIAN in b) or original(b, h)
    loaders = {"labelled": DataLoader([water[0], water[1]], batch_size=2),
               "unlabelled": DataLoader(unlabelled, batch_size=2)}
    before = task.model.offsite[0].weight.detach().clone()
    _trainer(tmp_path, steps=2).fit(task, loaders)
    # sct_fraction 0.5: one of the two steps had SCT, on the unlabelled part only
    assert sct_losses == [False]
    assert not torch.equal(task.model.offsite[0].weight, before)
    assert int(task.skipped_steps) == 0


def test_sct_trains_a_model_that_predicts_a_correction_to_a_base_hamiltonian(water, tmp_path):
    """SCT's loss is on the full H, base included: with ``base="minao_fock"`` the unlabelled
    molecules get their base Hamiltonian on the fly and the gradient reaches the correction."""
    unlabelled = [d.clone() for d in (water[6], water[7])]
    for d in unlabelled:
        for key in (keys.HAMILTONIAN, keys.OVERLAP, keys.DENSITY_MATRIX, keys.ORBITAL_ENERGIES):
            del d[key]
    task = _task(base="minao_fock", mode="mixed", sct_weight=10.0, sct_grid_level=1)
    batch = Batch.from_data_list(unlabelled)
    correction_only = copy.deepcopy(task.model)
    correction_only.base = None
    predicted = task.model(batch)[keys.HAMILTONIAN]
    # the prediction is the base plus the network's correction, far from the correction alone
    assert (predicted - correction_only(batch)[keys.HAMILTONIAN]).abs().max() > 1.0
    loss = task.self_consistency_loss(batch, predicted)
    loss.backward()
    grads = torch.cat([p.grad.reshape(-1) for p in task.model.parameters() if p.grad is not None])
    assert torch.isfinite(loss) and torch.isfinite(grads).all() and grads.abs().max() > 0
    task.zero_grad()
    loaders = {"labelled": DataLoader([water[0], water[1]], batch_size=2), "unlabelled": DataLoader(unlabelled, batch_size=2)}
    before = task.model.offsite[0].weight.detach().clone()
    _trainer(tmp_path, steps=2).fit(task, loaders)
    assert not torch.equal(task.model.offsite[0].weight, before) and int(task.skipped_steps) == 0


def test_a_base_file_keeps_the_base_hamiltonians_from_one_run_to_the_next(tmp_path, monkeypatch):
    import numpy as np

    import zoo.models.hamiltonian as hamiltonian_module
    from zoo.data import HamiltonianMetadata
    from zoo.data.readers import read_base_hamiltonians
    from zoo.qc.guess import base_hamiltonian

    def data():
        return AtomicDataModule(source=str(WATER_H5), reader_kwargs={"indices": list(range(6))}, dtype="float64",
                                targets=[keys.HAMILTONIAN], split={"method": "random", "sizes": [4, 2, 0], "seed": 0},
                                split_dir=str(tmp_path), batch_size=2)

    base_file = tmp_path / "bases.h5"
    first = _task(base="minao_fock", base_file=str(base_file))
    _trainer(tmp_path, steps=1).fit(first, datamodule=data())
    stored = read_base_hamiltonians(base_file, "minao_fock", first.model.metadata())
    assert len(stored) == 6  # the 4 training and 2 validation structures
    z, positions, matrix = stored[0]
    assert np.allclose(matrix, base_hamiltonian("minao_fock", z, positions, first.model.level), atol=1e-10)

    computed = []
    monkeypatch.setattr(hamiltonian_module, "base_hamiltonian", lambda *args: computed.append(args))
    second = _task(base="minao_fock", base_file=str(base_file))
    _trainer(tmp_path, steps=1).fit(second, datamodule=data())
    assert computed == [] and len(read_base_hamiltonians(base_file, "minao_fock", second.model.metadata())) == 6

    other_level = HamiltonianMetadata.computed_at(LevelOfTheory(xc="pbe", basis="def2-svp"))
    with pytest.raises(ValueError, match="another level of theory: .*xc: 'pbe' != 'b3lyp5'"):
        read_base_hamiltonians(base_file, "minao_fock", other_level)
    with pytest.raises(ValueError, match="not a file of base Hamiltonians"):  # e.g. the labels by mistake
        read_base_hamiltonians(WATER_H5, "minao_fock", first.model.metadata())
