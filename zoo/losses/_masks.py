"""Label masks: which rows of a batch hold a label, and losses over those rows only (the way
fairchem's masked losses work).

Heterogeneous data (structures read with ``mask_missing=True``, some without forces or energies)
carry zeros where a label is missing and ``False`` in its mask key (:data:`zoo.data.keys.MASKS`,
one flag per structure). Every output reads its rows through :func:`label_mask`, so a missing
label is never trained on nor measured.
"""

from __future__ import annotations

import torch

from zoo.data import batch_index, keys
from zoo.losses._functions import LOSSES


def label_mask(batch, key: str) -> torch.Tensor | None:
    """Bool mask of the rows of ``batch[key]`` that hold a label: per structure, or per atom for a
    per-atom key (:data:`~zoo.data.keys.PER_ATOM`); ``None`` when the batch has no mask for ``key``
    (every row is a label).

    Example:
        >>> from torch_geometric.data import Batch
        >>> from zoo.data import AtomicData
        >>> labelled = AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]], forces=[[0, 0, 1], [0, 0, -1]])
        >>> unlabelled = labelled.clone()
        >>> labelled.has_forces, unlabelled.has_forces = torch.tensor([True]), torch.tensor([False])
        >>> label_mask(Batch.from_data_list([labelled, unlabelled]), "forces").tolist()
        [True, True, False, False]
        >>> label_mask(labelled, "energy") is None
        True
    """
    mask = keys.MASKS.get(key)
    if mask is None or mask not in batch:
        return None
    structures = batch[mask].reshape(-1).bool()
    return structures[batch_index(batch)] if key in keys.PER_ATOM else structures


def masked_loss(loss: str, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The loss ``loss`` (a name of :data:`LOSSES`) over the rows where ``mask`` is true.

    With no such row it is a zero that keeps ``prediction`` in the graph, so that every parameter
    that made it still gets a (zero) gradient, as DDP requires of each step.

    Example:
        >>> prediction = torch.tensor([[1.0], [5.0], [3.0]], requires_grad=True)
        >>> masked_loss("mae", prediction, torch.zeros(3, 1), torch.tensor([True, False, True])).item()
        2.0
        >>> masked_loss("mae", prediction, torch.zeros(3, 1), torch.zeros(3, dtype=torch.bool)).item()
        0.0
    """
    if mask.any():
        return LOSSES[loss](prediction[mask], target[mask])
    return prediction.sum() * 0.0
