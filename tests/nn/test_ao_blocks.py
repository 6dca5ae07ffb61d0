"""Irreps <-> AO blocks: orthogonal, equivariant, exact in float64 after a float32 build."""

import pytest
import torch

from zoo.nn import AOBlockExpansion, coupled_irreps
from zoo.testing import random_rotation, wigner_D

O_SVP, H_SVP = "3x0e+2x1o+1x2e", "2x0e+1x1o"


def test_coupled_irreps_cover_the_block():
    assert str(coupled_irreps("1x1o", "1x1o")) == "1x0e+1x1e+1x2e"
    assert str(coupled_irreps("1x1o", "1x2e")) == "1x1o+1x2o+1x3o"
    # grouped by irrep: s ⊗ s, s ⊗ p, ... each add to one multiplicity
    assert str(coupled_irreps("2x0e+1x1o", "2x0e+1x1o")) == "5x0e+4x1o+1x1e+1x2e"
    assert coupled_irreps(O_SVP, H_SVP).dim == 14 * 5
    # d ⊗ d needs L = 0..4, the odd L as pseudo-tensors
    assert {(ir.l, ir.p) for _, ir in coupled_irreps("1x2e", "1x2e")} == {(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)}


@pytest.mark.parametrize("improper", [False, True])
@pytest.mark.parametrize("rows, cols", [(O_SVP, O_SVP), (O_SVP, H_SVP), ("1x3o", "2x1o+1x4e")])
def test_expansion_is_orthogonal_and_equivariant(rows, cols, improper):
    expansion = AOBlockExpansion(rows, cols).double()
    q = expansion.matrix
    torch.testing.assert_close(q @ q.T, torch.eye(q.shape[0], dtype=torch.float64), atol=1e-13, rtol=0)
    rotation = random_rotation(improper=improper, generator=torch.Generator().manual_seed(3))
    x = torch.randn(4, expansion.irreps_coupled.dim, dtype=torch.float64)
    rotated = expansion(x @ wigner_D(expansion.irreps_coupled, rotation).T)
    d_row, d_col = wigner_D(expansion.irreps_row, rotation), wigner_D(expansion.irreps_col, rotation)
    torch.testing.assert_close(rotated, d_row @ expansion(x) @ d_col.T, atol=1e-12, rtol=0)
    torch.testing.assert_close(expansion.project(expansion(x)), x, atol=1e-12, rtol=0)


def test_transforms_fold_in_and_double_is_exact():
    rotation = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))[0]
    plain = AOBlockExpansion("1x2e", "1x0e").double()
    with_order = AOBlockExpansion("1x2e", "1x0e", row_transform=rotation)
    assert with_order.matrix.dtype == torch.get_default_dtype()
    with_order = with_order.double()
    x = torch.randn(3, plain.irreps_coupled.dim, dtype=torch.float64)
    # exact after .double() although built in float32: the float64 master copy is used
    torch.testing.assert_close(with_order(x), rotation @ plain(x), atol=1e-14, rtol=0)
