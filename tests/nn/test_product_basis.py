import pytest
import torch
from e3nn import o3

from zoo.nn import ManyBodyInteraction, ProductBasis
from zoo.testing import assert_interaction_equivariant, random_rotation, wigner_D

BASIS = "4x0e+4x1o+4x2e"


def _inputs(irreps, n=6, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    basis = torch.randn(n, o3.Irreps(irreps).dim, dtype=dtype, generator=generator)
    species = torch.tensor([0, 1, 2, 0, 1, 2])[:n]
    return basis, species


def test_powers_are_channelwise_products_coupled_back_to_the_basis():
    basis = ProductBasis(BASIS, "8x0e+4x1o+4x2e", correlation=3, num_elements=3)
    assert len(basis.products) == 2  # nu = 2, 3
    for product, weight in zip(basis.products, basis.weights):
        assert product.mode == "uuu"
        assert product.irreps_out == o3.Irreps(BASIS)
        # one weight per element, channel and path
        assert weight.shape == (3, 4 * len(product.instructions))
    square, cube = basis.products
    # the square keeps one of each pair of swapped paths and drops a x a -> 1e-like paths: 8 of 11
    assert len(square.instructions) == 8 and len(cube.instructions) == 11
    assert basis.linear.irreps_in == o3.Irreps(BASIS) * 3

    linear = ProductBasis(BASIS, BASIS, correlation=1, num_elements=3)
    assert len(linear.products) == 0 and len(linear.weights) == 0


def test_left_out_square_paths_are_redundant():
    # what justifies pruning the square: a swapped path is the same function up to a sign, and a
    # channel times itself coupled to odd L with l1 = l2 is zero
    irreps = o3.Irreps("3x1o+3x2e")
    full = o3.TensorProduct(irreps, irreps, "3x1e+3x1o", [(0, 0, 0, "uuu", False), (0, 1, 1, "uuu", False),
                                                          (1, 0, 1, "uuu", False)])
    a = irreps.randn(5, -1, dtype=torch.float64)
    out = full.double()(a, a)
    assert out[:, :9].abs().max() < 1e-12  # 1o x 1o -> 1e (a cross product a x a)
    assert out[:, 9:].abs().max() > 1e-3


@pytest.mark.parametrize("target", ["1o", "2o"])
def test_swapped_paths_agree_up_to_sign(target):
    irreps = o3.Irreps("2x1o+2x2e")
    a = irreps.randn(5, -1, dtype=torch.float64)
    one = o3.TensorProduct(irreps, irreps, f"2x{target}", [(0, 1, 0, "uuu", False)]).double()(a, a)
    other = o3.TensorProduct(irreps, irreps, f"2x{target}", [(1, 0, 0, "uuu", False)]).double()(a, a)
    sign = (-1) ** (1 + 2 + o3.Irrep(target).l)  # the Wigner 3j symbol's symmetry under swapping l1, l2
    assert one.abs().max() > 1e-3 and torch.allclose(one, sign * other, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("irreps", [BASIS, "3x0e+3x1o+3x1e+3x2o+3x2e"])
def test_rotation_and_reflection_equivariant(irreps, dtype):
    torch.manual_seed(0)
    basis = ProductBasis(irreps, "5x0e+" + irreps, correlation=3, num_elements=3).to(dtype)
    x, species = _inputs(irreps, dtype=dtype)
    out = basis(x, species)
    atol = 1e-4 if dtype == torch.float32 else 1e-10
    for improper in (False, True):
        rotation = random_rotation(dtype, improper, torch.Generator().manual_seed(int(improper)))
        rotated = basis(x @ wigner_D(basis.irreps_in, rotation).T, species)
        expected = out @ wigner_D(basis.irreps_out, rotation).T
        assert (rotated - expected).abs().max() < atol * max(1.0, expected.abs().max())


def test_converted_to_float64_keeps_exact_coupling_coefficients():
    torch.manual_seed(0)
    basis = ProductBasis(BASIS, BASIS, correlation=3, num_elements=3).double()  # built in float32
    x, species = _inputs(BASIS)
    rotation = random_rotation(torch.float64, generator=torch.Generator().manual_seed(2))
    rotated = basis(x @ wigner_D(BASIS, rotation).T, species)
    assert torch.allclose(rotated, basis(x, species) @ wigner_D(BASIS, rotation).T, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_copy_has_the_same_tensors_in_the_same_order(dtype):
    """What an EMA's averaged model relies on: it pairs the copy's tensors with the model's by order."""
    import copy

    torch.manual_seed(0)
    basis = ProductBasis(BASIS, BASIS, correlation=3, num_elements=3).to(dtype).eval()
    basis.weights[0].requires_grad_(False)
    clone = copy.deepcopy(basis)
    for copied, original in ((clone.named_parameters(), basis.named_parameters()),
                             (clone.named_buffers(), basis.named_buffers())):
        copied, original = list(copied), list(original)
        assert [name for name, _ in copied] == [name for name, _ in original]
        for (_, a), (_, b) in zip(copied, original):
            assert a.dtype == b.dtype and torch.equal(a, b) and (a.numel() == 0 or a.data_ptr() != b.data_ptr())
    assert [p.requires_grad for p in clone.parameters()] == [p.requires_grad for p in basis.parameters()]
    assert not clone.training
    x, species = _inputs(BASIS, dtype=dtype)
    assert torch.equal(clone(x, species), basis(x, species))


def test_output_is_a_polynomial_of_degree_correlation():
    # B^(nu) is homogeneous of degree nu in the atomic basis: f(t A) is a cubic in t for
    # correlation 3 (body order 4), so its third finite difference is nonzero and its fourth zero
    torch.manual_seed(0)
    basis = ProductBasis(BASIS, BASIS, correlation=3, num_elements=3).double()
    x, species = _inputs(BASIS)
    values = torch.stack([basis(t * x, species) for t in (0.0, 1.0, 2.0, 3.0, 4.0)])
    third = values[3] - 3 * values[2] + 3 * values[1] - values[0]
    fourth = values[4] - 4 * values[3] + 6 * values[2] - 4 * values[1] + values[0]
    assert third.abs().max() > 1e-2 and fourth.abs().max() < 1e-10


def test_weights_depend_on_the_element_and_rows_follow_their_atom():
    torch.manual_seed(0)
    basis = ProductBasis(BASIS, BASIS, correlation=2, num_elements=3).double()
    x, _ = _inputs(BASIS, n=2)
    same = x[:1].expand(3, -1)
    out = basis(same, torch.tensor([0, 1, 0]))
    assert torch.equal(out[0], out[2]) and (out[0] - out[1]).abs().max() > 1e-3
    permutation = torch.tensor([1, 0])
    species = torch.tensor([2, 0])
    assert torch.allclose(basis(x[permutation], species[permutation]), basis(x, species)[permutation], atol=1e-14)


def test_bad_arguments():
    with pytest.raises(ValueError, match="same multiplicity"):
        ProductBasis("4x0e+2x1o", "4x0e")
    with pytest.raises(ValueError, match="same multiplicity"):
        ProductBasis("4x0e+4x0e", "4x0e")
    with pytest.raises(ValueError, match="correlation"):
        ProductBasis(BASIS, BASIS, correlation=0)


def test_interaction_equivariant_and_resettable():
    irreps_sh = o3.Irreps.spherical_harmonics(2)
    torch.manual_seed(0)
    layer = ManyBodyInteraction("4x0e", "4x0e+4x1o+4x2e", irreps_sh, num_radial=4, radial_hidden=8,
                                num_elements=2, correlation=3).double()
    assert layer.irreps_out == o3.Irreps("4x0e+4x1o+4x2e")
    assert layer.product_basis.irreps_out == layer.gate.irreps_in
    run, _ = assert_interaction_equivariant(layer, irreps_sh)
    positions = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    before = run(positions)
    layer.reset_parameters()
    assert not torch.allclose(before, run(positions))
