import itertools

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list
from torch_geometric.data import Batch

from zoo.data import AtomicData, RadiusGraph, edge_vectors, radius_graph


def _pairs(edge_index, shifts=None):
    rows = edge_index.t().tolist()
    if shifts is None:
        return sorted(map(tuple, rows))
    return sorted(tuple(r) + tuple(int(round(s)) for s in shift) for r, shift in zip(rows, shifts.tolist()))


def test_molecular_graph_matches_brute_force():
    atoms = molecule("CH3CH2OH")
    pos = torch.tensor(atoms.positions)
    edge_index, shifts = radius_graph(pos, 2.0)
    expected = [
        (j, i) for i, j in itertools.permutations(range(len(atoms)), 2)
        if np.linalg.norm(atoms.positions[i] - atoms.positions[j]) < 2.0
    ]
    assert _pairs(edge_index) == sorted(expected)
    assert not shifts.any()


def test_batched_graph_never_connects_structures():
    data = [RadiusGraph(10.0)(AtomicData.from_ase(molecule(m))) for m in ("H2O", "CH4")]
    batch = Batch.from_data_list(data)
    edge_index, _ = radius_graph(batch.pos, 10.0, batch.batch)
    assert (batch.batch[edge_index[0]] == batch.batch[edge_index[1]]).all()
    assert edge_index.shape[1] == 3 * 2 + 5 * 4
    # the transform's per-structure edges, offset by batching, are the same set
    assert _pairs(edge_index) == _pairs(batch.edge_index)


def test_periodic_graph_matches_ase():
    atoms = bulk("Cu", "fcc", 3.6) * (2, 1, 1)
    data = RadiusGraph(3.0)(AtomicData.from_ase(atoms, dtype=torch.float64))
    i, j, shift = neighbor_list("ijS", atoms, 3.0)
    expected = sorted((int(b), int(a), *map(int, s)) for a, b, s in zip(i, j, shift))
    assert _pairs(data.edge_index, data.edge_cell_shift) == expected
    distances = edge_vectors(data).norm(dim=1)
    assert torch.allclose(distances, torch.full_like(distances, 3.6 / 2**0.5), atol=1e-8)


def test_edge_vectors_are_differentiable():
    data = RadiusGraph(3.0)(AtomicData.from_ase(molecule("H2O"), dtype=torch.float64))
    data.pos.requires_grad_(True)
    edge_vectors(data).norm(dim=1).sum().backward()
    assert data.pos.grad is not None and torch.isfinite(data.pos.grad).all()


def test_bad_cutoff():
    with pytest.raises(ValueError, match="cutoff must be positive"):
        radius_graph(torch.zeros(2, 3), 0.0)
