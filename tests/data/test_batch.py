"""Reading a batch: the same answers for a batch and for a single structure."""

import torch
from torch_geometric.data import Batch

from zoo.data import AtomicData, atom_ranges, batch_index, keys, kind_mask, n_structures, select_structures


def _structures():
    water = AtomicData.from_arrays([8, 1, 1], [[0, 0, 0], [0, 0, 0.96], [0.93, 0, -0.24]])
    h2 = AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]])
    water[keys.STRUCTURE_KIND], h2[keys.STRUCTURE_KIND] = "xtb_optimized", "perturbed"
    return [water, h2, water.clone()]


def test_structure_of_each_atom_and_counts():
    structures = _structures()
    batch = Batch.from_data_list(structures)
    assert batch_index(batch).tolist() == [0, 0, 0, 1, 1, 2, 2, 2] and n_structures(batch) == 3
    assert atom_ranges(batch) == [(0, 3), (3, 5), (5, 8)]
    single = structures[1]
    assert batch_index(single).tolist() == [0, 0] and n_structures(single) == 1 and atom_ranges(single) == [(0, 2)]
    # a dict of canonical keys without counts (a model's own input) reads the same
    plain = {keys.POSITIONS: batch.pos, keys.BATCH: batch.batch}
    assert n_structures(plain) == 3 and batch_index({keys.POSITIONS: single.pos}).tolist() == [0, 0]


def test_kinds_choose_sub_batches():
    batch = Batch.from_data_list(_structures())
    minima = kind_mask(batch, ["xtb_optimized"])
    assert minima.tolist() == [True, False, True]
    selected = select_structures(batch, minima)
    assert selected.num_graphs == 2 and torch.equal(selected.pos, torch.cat([batch.pos[:3], batch.pos[5:]]))
    assert select_structures(batch, torch.ones(3, dtype=torch.bool)) is batch
    assert select_structures(batch, torch.zeros(3, dtype=torch.bool)) is None
    del batch[keys.STRUCTURE_KIND]  # data that name no kinds: every structure counts
    assert kind_mask(batch, ["xtb_optimized"]).all()
