import pytest
from e3nn import o3

from zoo.nn import hidden_irreps


def test_natural_parity_keeps_polar_tensors():
    assert hidden_irreps(8, 3) == o3.Irreps("8x0e+8x1o+8x2e+8x3o")


def test_full_parity_adds_pseudo_tensors():
    assert hidden_irreps(4, 2, "full") == o3.Irreps("4x0e+4x1o+4x1e+4x2o+4x2e")
    assert hidden_irreps(4, 0, "full") == o3.Irreps("4x0e")


@pytest.mark.parametrize("args", [(8, 2, "odd"), (0, 2, "natural"), (8, -1, "natural")])
def test_bad_arguments(args):
    with pytest.raises(ValueError):
        hidden_irreps(*args)
