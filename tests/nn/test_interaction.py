import pytest
import torch
from e3nn import o3

from zoo.nn import Interaction
from zoo.testing import assert_interaction_equivariant


def test_output_irreps_and_equivariance():
    irreps_sh = o3.Irreps.spherical_harmonics(2)
    layer = Interaction("4x0e", "4x0e+4x1o+4x2e", irreps_sh, num_radial=4, radial_hidden=8, num_elements=2).double()
    assert layer.irreps_out == o3.Irreps("4x0e+4x1o+4x2e")
    assert_interaction_equivariant(layer, irreps_sh)


def test_the_equivariance_check_fails_for_a_layer_that_ignores_rotations():
    irreps_sh = o3.Irreps.spherical_harmonics(1)
    layer = Interaction("4x0e", "4x0e+4x1o", irreps_sh, num_radial=4, num_elements=2).double()
    forward = layer.forward
    layer.forward = lambda x, species, edge_index, sh, radial: forward(x, species, edge_index, sh.detach().abs(), radial)
    with pytest.raises(AssertionError, match="not equivariant"):
        assert_interaction_equivariant(layer, irreps_sh)


def test_shared_self_connection_and_reset():
    layer = Interaction("4x0e+4x1o", "4x0e+4x1o", o3.Irreps.spherical_harmonics(1), num_radial=4)
    assert isinstance(layer.self_connection, o3.Linear)
    x = torch.randn(2, layer.irreps_in.dim)
    edge_index = torch.tensor([[1], [0]])
    args = (torch.zeros(2, dtype=torch.long), edge_index, torch.randn(1, 4), torch.randn(1, 4))
    before = layer(x, *args)
    layer.reset_parameters()
    assert not torch.allclose(before, layer(x, *args))
