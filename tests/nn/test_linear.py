import torch
from e3nn.util.test import assert_equivariant

from zoo.nn import ElementLinear


def test_weights_depend_on_element_only():
    linear = ElementLinear("4x0e+2x1o", "3x0e+2x1o+1x2e", num_elements=2)
    x = torch.randn(1, linear.irreps_in.dim).expand(3, -1)
    out = linear(x, torch.tensor([0, 1, 0]))
    assert out.shape == (3, linear.irreps_out.dim)
    assert torch.allclose(out[0], out[2]) and not torch.allclose(out[0], out[1])
    assert out[:, -5:].abs().max() == 0  # no 2e input, no 2e output


def test_equivariant():
    linear = ElementLinear("4x0e+2x1o+2x2e", "3x0e+2x1o+2x2e", num_elements=3)
    species = torch.tensor([0, 2, 1, 1])
    assert_equivariant(lambda x: linear(x, species), irreps_in=[linear.irreps_in], irreps_out=[linear.irreps_out],
                       args_in=[torch.randn(4, linear.irreps_in.dim)])
