"""Reading a batch: which structure each atom belongs to, how many structures, and sub-batches.

Every helper takes a PyG batch or a single structure alike (an :class:`~zoo.data.AtomicData`, or a
dict of canonical keys), so that models, losses and tasks never spell out the single-structure case.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection

import torch
from torch_geometric.data import Batch

from zoo.data import keys


def batch_index(batch) -> torch.Tensor:
    """[n_atoms] long: the structure of each atom (all zeros for a single structure).

    Example:
        >>> from zoo.data import AtomicData
        >>> water = AtomicData.from_arrays([8, 1, 1], [[0, 0, 0], [0, 0, 1], [0, 1, 0]])
        >>> batch_index(water).tolist(), batch_index(Batch.from_data_list([water, water])).tolist()
        ([0, 0, 0], [0, 0, 0, 1, 1, 1])
    """
    if keys.BATCH in batch and batch[keys.BATCH] is not None:
        return batch[keys.BATCH]
    positions = batch[keys.POSITIONS]
    return torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)


def n_structures(batch) -> int:
    """The number of structures (1 for a single structure).

    Example:
        >>> from zoo.data import AtomicData
        >>> water = AtomicData.from_arrays([8, 1, 1], [[0, 0, 0], [0, 0, 1], [0, 1, 0]])
        >>> n_structures(water), n_structures(Batch.from_data_list([water, water]))
        (1, 2)
    """
    if keys.N_ATOMS in batch:
        return int(batch[keys.N_ATOMS].numel())
    return int(batch_index(batch).max()) + 1


def atom_ranges(batch) -> list[tuple[int, int]]:
    """``(first atom, end atom)`` of each structure: the atoms of a batch are stored structure after
    structure.

    Example:
        >>> from zoo.data import AtomicData
        >>> water = AtomicData.from_arrays([8, 1, 1], [[0, 0, 0], [0, 0, 1], [0, 1, 0]])
        >>> atom_ranges(Batch.from_data_list([water, water]))
        [(0, 3), (3, 6)]
    """
    if keys.N_ATOMS in batch:
        counts = batch[keys.N_ATOMS].reshape(-1).tolist()
    else:
        counts = [batch[keys.POSITIONS].shape[0]]
    return list(itertools.pairwise([0, *itertools.accumulate(counts)]))


def kind_mask(batch, kinds: Collection[str]) -> torch.Tensor:
    """[n_structures] bool: the structures whose :data:`~zoo.data.keys.STRUCTURE_KIND` is one of
    ``kinds``; every structure when the data name no kinds."""
    device = batch[keys.POSITIONS].device
    if keys.STRUCTURE_KIND not in batch:
        return torch.ones(n_structures(batch), dtype=torch.bool, device=device)
    found = batch[keys.STRUCTURE_KIND]
    found = [found] if isinstance(found, str) else found
    return torch.tensor([kind in kinds for kind in found], dtype=torch.bool, device=device)


def select_structures(batch, mask: torch.Tensor):
    """The structures of a PyG batch where ``mask`` [n_structures] is true, as a new batch; the
    batch itself when all are, ``None`` when none is."""
    if not bool(mask.any()):
        return None
    if bool(mask.all()):
        return batch
    return Batch.from_data_list(batch.index_select(mask.nonzero().reshape(-1).tolist()))
