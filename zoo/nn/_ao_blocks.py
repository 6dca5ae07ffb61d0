"""Irreps <-> atomic-orbital blocks: the Clebsch–Gordan change of basis of a product of two shells.

A block ``M[a, b]`` of an AO matrix between the shells of two atoms (rows: atom A's AOs, columns:
atom B's) rotates as ``D_A M D_B^T``. Shell pairs ``l1 ⊗ l2`` decompose into irreps
``L = |l1 - l2| .. l1 + l2`` of parity ``p1 p2``, so the whole block is an orthogonal change of
basis away from a vector of irreps, the *coupled* form: a model predicts the coupled irreps and
this module turns them into the block (QHNet, PhiSNet and SchNOrb's successors do the same).
"""

from __future__ import annotations

import numpy as np
import torch
from e3nn import o3


def _paths(irreps_row: o3.Irreps, irreps_col: o3.Irreps) -> list[tuple[o3.Irrep, int, int, o3.Irrep, o3.Irrep]]:
    """``(L, row_start, col_start, ir_row, ir_col)`` for every shell pair and L, grouped by L (stable)."""
    paths = []
    row_start = 0
    for mul_a, ir_a in irreps_row:
        for _ in range(mul_a):
            col_start = 0
            for mul_b, ir_b in irreps_col:
                for _ in range(mul_b):
                    paths += [(ir, row_start, col_start, ir_a, ir_b) for ir in ir_a * ir_b]
                    col_start += ir_b.dim
            row_start += ir_a.dim
    # grouped by irrep, so that the coupled irreps are "14x0e+..." rather than hundreds of "1x":
    # e3nn layers built on few, large multiplicities compile and run much faster
    return sorted(paths, key=lambda path: path[0])


def coupled_irreps(irreps_row, irreps_col) -> o3.Irreps:
    """Irreps of the coupled form of a ``irreps_row ⊗ irreps_col`` block, sorted by irrep.

    Every shell pair (each copy of each row and column irrep) contributes ``L = |l1 - l2| .. l1 + l2``
    of parity ``p1 p2``; copies of one irrep are ordered by row shell, then column shell.

    >>> coupled_irreps("1x1o", "1x1o")
    1x0e+1x1e+1x2e
    """
    return o3.Irreps([(1, path[0]) for path in _paths(o3.Irreps(irreps_row), o3.Irreps(irreps_col))]).simplify()


def _expansion_matrix(irreps_row: o3.Irreps, irreps_col: o3.Irreps) -> torch.Tensor:
    """``Q [coupled.dim, row.dim * col.dim]``, orthogonal, in float64."""
    paths = _paths(irreps_row, irreps_col)
    matrix = torch.zeros(sum(path[0].dim for path in paths), irreps_row.dim, irreps_col.dim, dtype=torch.float64)
    k = 0
    for ir, row, col, ir_a, ir_b in paths:
        # e3nn's 3j symbols have unit Frobenius norm; sqrt(2L+1) makes each L's columns
        # orthonormal, so Q is orthogonal and its inverse is Q^T
        cg = o3.wigner_3j(ir_a.l, ir_b.l, ir.l, dtype=torch.float64) * (2 * ir.l + 1) ** 0.5
        matrix[k:k + ir.dim, row:row + ir_a.dim, col:col + ir_b.dim] = cg.permute(2, 0, 1)
        k += ir.dim
    return matrix.reshape(k, irreps_row.dim * irreps_col.dim)


class AOBlockExpansion(torch.nn.Module):
    """Coupled irreps ``[..., coupled.dim]`` -> AO block ``[..., row.dim, col.dim]`` and back.

    The block is ``row_transform @ B @ col_transform.T`` with ``B`` the block in e3nn's basis:
    pass :func:`zoo.qc.ao.pyscf_to_e3nn_matrix`'s transpose for one atom as the transforms to get
    blocks in PySCF's AO order directly (the change of order is folded into one fixed matrix).

    Args:
        irreps_row: irreps of the row AOs (one atom's, e.g. ``zoo.qc.ao.ao_irreps(basis, "O")``).
        irreps_col: irreps of the column AOs.
        row_transform: optional orthogonal ``[row.dim, row.dim]`` change of basis of the rows.
        col_transform: optional orthogonal ``[col.dim, col.dim]`` change of basis of the columns.
    """

    def __init__(self, irreps_row, irreps_col, row_transform=None, col_transform=None):
        super().__init__()
        self.irreps_row, self.irreps_col = o3.Irreps(irreps_row), o3.Irreps(irreps_col)
        self.irreps_coupled = coupled_irreps(self.irreps_row, self.irreps_col)
        n_row, n_col = self.irreps_row.dim, self.irreps_col.dim
        matrix = _expansion_matrix(self.irreps_row, self.irreps_col).reshape(-1, n_row, n_col)
        if row_transform is not None:
            matrix = torch.tensor(np.asarray(row_transform), dtype=torch.float64) @ matrix
        if col_transform is not None:
            matrix = matrix @ torch.tensor(np.asarray(col_transform), dtype=torch.float64).T
        # the exact float64 master copy; the buffer follows the module's dtype (see _apply)
        self._matrix64 = matrix.reshape(-1, n_row * n_col)
        self.register_buffer("matrix", self._matrix64.to(torch.get_default_dtype()), persistent=False)

    def _apply(self, fn, recurse=True):
        # .double() after a float32 build must give the exact float64 matrix, not float32 rounding
        super()._apply(fn, recurse)
        self.matrix = self._matrix64.to(dtype=self.matrix.dtype, device=self.matrix.device)
        self._matrix64 = self._matrix64.to(device=self.matrix.device)
        return self

    def forward(self, coupled: torch.Tensor) -> torch.Tensor:
        """``[..., coupled.dim]`` -> ``[..., row.dim, col.dim]``."""
        block = coupled @ self.matrix
        return block.reshape(*coupled.shape[:-1], self.irreps_row.dim, self.irreps_col.dim)

    def project(self, block: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`forward`: ``[..., row.dim, col.dim]`` -> ``[..., coupled.dim]``."""
        return block.reshape(*block.shape[:-2], -1) @ self.matrix.T

    def extra_repr(self) -> str:
        return f"{self.irreps_row} ⊗ {self.irreps_col} <- {self.irreps_coupled}"
