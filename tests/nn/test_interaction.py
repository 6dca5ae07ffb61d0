import torch
from e3nn import o3

from zoo.nn import Interaction, RadialEmbedding
from zoo.testing import wigner_D


def test_output_irreps_and_equivariance():
    irreps_sh = o3.Irreps.spherical_harmonics(2)
    layer = Interaction("4x0e", "4x0e+4x1o+4x2e", irreps_sh, num_radial=4, radial_hidden=8, num_elements=2).double()
    assert layer.irreps_out == o3.Irreps("4x0e+4x1o+4x2e")
    sh = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
    radial = RadialEmbedding(5.0, 4)
    pos = torch.randn(5, 3, dtype=torch.float64)
    edge_index = torch.tensor([[1, 2, 3, 4, 0, 2], [0, 0, 0, 0, 1, 1]])
    x = torch.randn(5, 4, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0, 1])

    def run(p):
        vectors = p[edge_index[0]] - p[edge_index[1]]
        return layer(x, species, edge_index, sh(vectors), radial(vectors.norm(dim=-1)))

    out = run(pos)
    assert out.shape == (5, layer.irreps_out.dim)
    rotation = -o3.rand_matrix(dtype=torch.float64)
    assert torch.allclose(run(pos @ rotation.T), out @ wigner_D(layer.irreps_out, rotation).T, atol=1e-10)


def test_shared_self_connection_and_reset():
    layer = Interaction("4x0e+4x1o", "4x0e+4x1o", o3.Irreps.spherical_harmonics(1), num_radial=4)
    assert isinstance(layer.self_connection, o3.Linear)
    x = torch.randn(2, layer.irreps_in.dim)
    edge_index = torch.tensor([[1], [0]])
    args = (torch.zeros(2, dtype=torch.long), edge_index, torch.randn(1, 4), torch.randn(1, 4))
    before = layer(x, *args)
    layer.reset_parameters()
    assert not torch.allclose(before, layer(x, *args))
