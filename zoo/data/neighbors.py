"""Neighbour lists within a cutoff, the edge vectors they define, and the check that no two atoms
of a structure sit (nearly) on top of each other.

Molecules use a dense per-structure computation in torch (no compiled extension needed);
periodic structures use vesin's cell list. pyg-lib's ``radius_graph`` is not used because no
package registry here serves it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.transforms import BaseTransform

from zoo.data import keys
from zoo.data._batch import batch_index
from zoo.data.elements import SYMBOLS

#: The shortest distance (Å) allowed between two atoms of a structure given by a user. No chemical
#: bond is shorter than H2's 0.74 Å; closer atoms are a duplicated atom or positions in the wrong
#: unit, on which models return NaN or absurd values rather than failing.
MIN_INTERATOMIC_DISTANCE = 0.5


def radius_graph(
    pos: torch.Tensor,
    cutoff: float,
    batch: torch.Tensor | None = None,
    cell: torch.Tensor | None = None,
    pbc: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs (j, i), j != i (or j a periodic image of i), closer than ``cutoff`` (Å).

    Args:
        pos: [n_atoms, 3] positions.
        batch: [n_atoms] structure index of each atom (all zeros if omitted).
        cell: [n_structures, 3, 3] lattice vectors as rows, for periodic structures.
        pbc: [n_structures, 3] periodic directions.

    Returns:
        ``edge_index`` [2, n_edges] (row 0 the neighbour j, row 1 the centre i) and
        ``edge_cell_shift`` [n_edges, 3], the integer lattice shift to add to j.
    """
    if cutoff <= 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if batch is None:
        batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    if pbc is None or not bool(pbc.any()):
        return _dense_molecular_graph(pos, cutoff, batch)
    return _periodic_graph(pos, cutoff, batch, cell, pbc)


def _dense_molecular_graph(pos, cutoff, batch):
    with torch.no_grad():
        same = batch.unsqueeze(0) == batch.unsqueeze(1)
        dist = torch.cdist(pos, pos)
        mask = same & (dist < cutoff)
        mask.fill_diagonal_(False)
        centre, neighbour = mask.nonzero(as_tuple=True)
    edge_index = torch.stack([neighbour, centre])
    return edge_index, torch.zeros(edge_index.shape[1], 3, dtype=pos.dtype, device=pos.device)


def _periodic_graph(pos, cutoff, batch, cell, pbc):
    from vesin import NeighborList

    calculator = NeighborList(cutoff=float(cutoff), full_list=True)
    edges, shifts = [], []
    n_structures = int(batch.max()) + 1
    for s in range(n_structures):
        atoms = (batch == s).nonzero(as_tuple=True)[0]
        points = pos[atoms].detach().cpu().double().numpy()
        periodic = pbc[s].cpu().numpy()
        box = cell[s].detach().cpu().double().numpy() if periodic.any() else np.zeros((3, 3))
        i, j, shift = calculator.compute(points=points, box=box, periodic=periodic, quantities="ijS")
        # vesin: r_ij = x_j - x_i + S @ box, so j is the neighbour shifted by S
        i = torch.as_tensor(i.astype(np.int64), device=pos.device)
        j = torch.as_tensor(j.astype(np.int64), device=pos.device)
        edges.append(torch.stack([atoms[j], atoms[i]]))
        shifts.append(torch.as_tensor(shift, dtype=pos.dtype, device=pos.device))
    return torch.cat(edges, dim=1), torch.cat(shifts)


def edge_vectors(data, edge_index: torch.Tensor | None = None, edge_cell_shift=None) -> torch.Tensor:
    """Vectors from each centre i to its neighbour j, r_j - r_i (+ lattice shift), [n_edges, 3].

    Differentiable with respect to positions (and cell), which force and stress heads need.
    """
    edge_index = data[keys.EDGE_INDEX] if edge_index is None else edge_index
    pos = data[keys.POSITIONS]
    neighbour, centre = edge_index
    vectors = pos[neighbour] - pos[centre]
    if edge_cell_shift is None:
        edge_cell_shift = data.get(keys.EDGE_CELL_SHIFT) if hasattr(data, "get") else None
    if edge_cell_shift is not None and keys.CELL in data and bool(edge_cell_shift.any()):
        cell = data[keys.CELL].reshape(-1, 3, 3)[batch_index(data)[centre]]
        vectors = vectors + torch.einsum("ek,ekd->ed", edge_cell_shift.to(pos.dtype), cell)
    return vectors


def check_interatomic_distances(data, minimum: float = MIN_INTERATOMIC_DISTANCE) -> None:
    """Raise ``ValueError`` naming the closest two atoms of a structure when they are closer than
    ``minimum`` (Å); for a periodic structure the distances are those to the nearest images.

    Costs one neighbour list at a cutoff of ``minimum``, less than the graph a model builds.
    """
    cell = data[keys.CELL] if keys.CELL in data else None
    pbc = data[keys.PBC] if keys.PBC in data else None
    edge_index, shift = radius_graph(data[keys.POSITIONS], minimum, cell=cell, pbc=pbc)
    if not edge_index.shape[1]:
        return
    with torch.no_grad():
        lengths = edge_vectors(data, edge_index, shift).norm(dim=1)
    closest = int(lengths.argmin())
    first, second = sorted(int(atom) for atom in edge_index[:, closest])
    z = data[keys.ATOMIC_NUMBERS]
    pair = (f"atom {first} ({SYMBOLS[int(z[first])]}) and its periodic image" if first == second
            else f"atoms {first} ({SYMBOLS[int(z[first])]}) and {second} ({SYMBOLS[int(z[second])]})")
    raise ValueError(
        f"{pair} are {float(lengths[closest]):.3f} Å apart, closer than {minimum} Å (no chemical bond is "
        "shorter than H2's 0.74 Å): remove the duplicated atom, or give the positions (and cell) in Å"
    )


class RadiusGraph(BaseTransform):
    """Transform adding ``edge_index`` and ``edge_cell_shift`` for a cutoff (Å)."""

    def __init__(self, cutoff: float):
        self.cutoff = float(cutoff)

    def forward(self, data):
        cell = data[keys.CELL] if keys.CELL in data else None
        pbc = data[keys.PBC] if keys.PBC in data else None
        edge_index, shift = radius_graph(data[keys.POSITIONS], self.cutoff, cell=cell, pbc=pbc)
        data[keys.EDGE_INDEX] = edge_index
        data[keys.EDGE_CELL_SHIFT] = shift
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}(cutoff={self.cutoff})"
