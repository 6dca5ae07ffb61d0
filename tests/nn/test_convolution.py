import torch
from e3nn import o3

from zoo.nn import DepthwiseConvolution, RadialEmbedding
from zoo.testing import wigner_D


def _graph(n=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pos = 2.0 * torch.randn(n, 3, dtype=torch.float64, generator=generator)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    return pos, torch.stack([j[keep], i[keep]])


def _run(conv, x, pos, edge_index, radial, sh):
    vectors = pos[edge_index[0]] - pos[edge_index[1]]
    return conv(x, edge_index, sh(vectors), radial(vectors.norm(dim=-1)))


def test_paths_keep_only_target_irreps_and_are_depthwise():
    conv = DepthwiseConvolution("4x0e+4x1o", o3.Irreps.spherical_harmonics(2), "8x0e+8x1o", num_radial=8)
    assert {ir for _, ir in conv.irreps_out} == {o3.Irrep("0e"), o3.Irrep("1o")}
    assert conv.tensor_product.mode == "uvu"
    # one weight per channel and path, all from the radial MLP
    assert conv.tensor_product.weight_numel == 4 * len(conv.tensor_product.instructions)


def test_rotation_and_reflection_equivariant():
    irreps_sh = o3.Irreps.spherical_harmonics(2)
    conv = DepthwiseConvolution("3x0e+3x1o+3x2e", irreps_sh, "4x0e+4x1o+4x1e+4x2e+4x2o", num_radial=6).double()
    radial = RadialEmbedding(6.0, 6)
    sh = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
    pos, edge_index = _graph()
    x = conv.irreps_in.randn(pos.shape[0], -1, dtype=torch.float64)
    out = _run(conv, x, pos, edge_index, radial, sh)
    for rotation in (o3.rand_matrix(dtype=torch.float64), -o3.rand_matrix(dtype=torch.float64)):
        rotated = _run(conv, x @ wigner_D(conv.irreps_in, rotation).T, pos @ rotation.T, edge_index, radial, sh)
        assert torch.allclose(rotated, out @ wigner_D(conv.irreps_out, rotation).T, atol=1e-10)


def test_neighbours_beyond_cutoff_send_nothing():
    torch.manual_seed(0)  # deterministic weights and features: the check must not depend on the draw
    irreps_sh = o3.Irreps.spherical_harmonics(1)
    conv = DepthwiseConvolution("2x0e", irreps_sh, "2x0e+2x1o", num_radial=4)
    sh = o3.SphericalHarmonics(irreps_sh, normalize=True, normalization="component")
    pos = torch.tensor([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    edge_index = torch.tensor([[1, 2], [0, 0]])
    x = torch.randn(3, 2)
    out = _run(conv, x, pos, edge_index, RadialEmbedding(3.0, 4), sh)
    only_near = _run(conv, x, pos, edge_index[:, 1:], RadialEmbedding(3.0, 4), sh)
    assert torch.allclose(out, only_near)
    assert out[1:].abs().max() == 0  # atoms without incoming edges get no message
