"""The masked loss and metric layer: an output reads only the rows its labels exist for."""

import lightning.pytorch as pl
import pytest
import torch
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

from zoo.data import AtomicData, keys
from zoo.losses import Output, label_mask, masked_loss
from zoo.tasks import AtomisticTask


def _h2(energy, forces, has_energy=True, has_forces=True):
    data = AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]], energy=energy, forces=forces)
    data[keys.HAS_ENERGY], data[keys.HAS_FORCES] = torch.tensor([has_energy]), torch.tensor([has_forces])
    return data


@pytest.fixture
def batch():
    """Three H2: labelled, without forces, without energy (zeros where a label is missing)."""
    return Batch.from_data_list([_h2(-1.0, [[0, 0, 1], [0, 0, -1]]),
                                 _h2(-2.0, [[0, 0, 0], [0, 0, 0]], has_forces=False),
                                 _h2(0.0, [[0, 0, 2], [0, 0, -2]], has_energy=False)])


def test_label_masks_are_per_structure_or_per_atom(batch):
    assert label_mask(batch, keys.ENERGY).tolist() == [True, True, False]
    assert label_mask(batch, keys.FORCES).tolist() == [True, True, False, False, True, True]
    assert label_mask(batch, keys.DIPOLE) is None  # no mask key: every row is a label


def test_outputs_select_the_labelled_rows_and_the_given_atoms(batch):
    predictions = {keys.ENERGY: torch.tensor([-1.5, -2.5, 9.0]), keys.FORCES: torch.arange(18.0).reshape(6, 3)}
    prediction, target = Output(keys.ENERGY).select(batch, predictions)
    assert prediction.tolist() == [-1.5, -2.5] and target.tolist() == [-1.0, -2.0]
    prediction, target = Output(keys.FORCES).select(batch, predictions)
    assert torch.equal(prediction, predictions[keys.FORCES][[0, 1, 4, 5]]) and torch.equal(target, batch.forces[[0, 1, 4, 5]])
    # DeNS's uncorrupted atoms restrict per-atom outputs only
    atoms = torch.tensor([True, False, True, True, False, True])
    prediction, _ = Output(keys.FORCES).select(batch, predictions, atoms)
    assert torch.equal(prediction, predictions[keys.FORCES][[0, 5]])
    assert Output(keys.ENERGY).select(batch, predictions, atoms)[0].tolist() == [-1.5, -2.5]
    # no labelled row at all: nothing to compare
    assert Output(keys.FORCES).select(batch, predictions, torch.tensor([False, False, True, True, False, False])) is None
    with pytest.raises(KeyError, match="no labels 'dipole'"):
        Output("dipole").select(batch, {"dipole": torch.zeros(3, 3)})


def test_a_task_trains_and_measures_on_labels_only(batch):
    class Constant(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.value = torch.nn.Parameter(torch.tensor(0.5))

        def forward(self, batch):
            return {keys.ENERGY: self.value.expand(batch.num_graphs), keys.FORCES: self.value.expand(batch.num_nodes, 3)}

    task = AtomisticTask(Constant(), [Output(keys.ENERGY, metrics=["mae"]), Output(keys.FORCES, metrics=["mae"])])
    # a batch whose structures all lack forces trains the energy alone
    unlabelled = Batch.from_data_list([batch.to_data_list()[1]])
    assert task.compute_loss(unlabelled, task(unlabelled), "train").item() == pytest.approx((0.5 + 2.0) ** 2)
    result = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).validate(
        task, DataLoader(batch.to_data_list(), batch_size=3), verbose=False)[0]
    assert result["val/energy_mae"] == pytest.approx((1.5 + 2.5) / 2)  # the third energy is missing
    forces = batch.forces[[0, 1, 4, 5]]
    assert result["val/forces_mae"] == pytest.approx((forces - 0.5).abs().mean().item())


def test_masked_loss_keeps_the_graph_without_rows():
    prediction = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    target = torch.zeros(2, 2)
    assert masked_loss("mse", prediction, target, torch.tensor([False, True])).item() == pytest.approx(12.5)
    empty = masked_loss("mse", prediction, target, torch.tensor([False, False]))
    empty.backward()
    assert empty.item() == 0.0 and torch.equal(prediction.grad, torch.zeros(2, 2))

