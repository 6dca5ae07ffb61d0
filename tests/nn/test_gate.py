import pytest
import torch
from e3nn import o3
from e3nn.util.test import assert_equivariant

from zoo.nn import EquivariantGate


def test_irreps():
    gate = EquivariantGate("4x0e+2x0o+3x1o+3x1e+2x2e")
    assert gate.irreps_out == o3.Irreps("4x0e+2x0o+3x1o+3x1e+2x2e")
    # one 0e gate per gated irrep
    assert gate.irreps_in.count("0e") == 4 + 8


def test_equivariant_with_odd_scalars():
    gate = EquivariantGate("4x0e+2x0o+3x1o+3x1e+2x2e")
    assert_equivariant(gate, irreps_in=[gate.irreps_in], irreps_out=[gate.irreps_out])


def test_scalars_only():
    gate = EquivariantGate("5x0e")
    x = torch.randn(3, 5)
    assert gate.irreps_in == o3.Irreps("5x0e")
    ratio = gate(x) / torch.nn.functional.silu(x)  # SiLU up to e3nn's normalising constant
    assert torch.allclose(ratio, ratio[0, 0].expand_as(ratio))


def test_scalars_must_come_first():
    with pytest.raises(ValueError, match="scalars first"):
        EquivariantGate("2x1o+2x0e")
