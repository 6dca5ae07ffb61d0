import copy

import pytest
import torch
from e3nn import o3

from zoo.nn import ChannelwiseTensorProduct, depthwise_tensor_product, hidden_irreps

SH = o3.Irreps.spherical_harmonics(2)


def _e3nn(product: ChannelwiseTensorProduct) -> o3.TensorProduct:
    """e3nn's TensorProduct with the same paths: the reference the dense contraction must equal."""
    mode = product.mode
    instructions = [(i1, i2, i_out, mode, True) for i1, i2, i_out in product.instructions]
    own = not product.weights_per_sample
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn computes its Wigner 3j in the default dtype
    try:
        return o3.TensorProduct(product.irreps_in1, product.irreps_in2, product.irreps_out, instructions,
                                internal_weights=own, shared_weights=own)
    finally:
        torch.set_default_dtype(default)


@pytest.mark.parametrize("irreps1, irreps2", [
    (hidden_irreps(4, 2), SH),                                               # a convolution's "uvu"
    (hidden_irreps(3, 3, "full") + o3.Irreps("3x0e"), None),                 # a Hamiltonian head's "uuu", 0e twice
    (o3.Irreps("1x0e+1x1o"), o3.Irreps("1x0e+1x1o")),                        # one channel
])
@pytest.mark.parametrize("weights_per_sample", [True, False])
def test_equals_e3nn_tensor_product(irreps1, irreps2, weights_per_sample):
    irreps2 = irreps1 if irreps2 is None else irreps2
    product = depthwise_tensor_product(irreps1, irreps2, {ir for _, ir in irreps1}, weights_per_sample).double()
    reference = _e3nn(product)
    assert product.weight_numel == reference.weight_numel
    x, y = torch.randn(6, irreps1.dim, dtype=torch.float64), torch.randn(6, irreps2.dim, dtype=torch.float64)
    if weights_per_sample:
        weight = torch.randn(6, product.weight_numel, dtype=torch.float64)
        expected, got = reference(x, y, weight), product(x, y, weight)
    else:
        with torch.no_grad():
            reference.weight.copy_(product.weight)
        expected, got = reference(x, y), product(x, y)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_paths_sharing_an_output_irrep_equal_e3nn():
    # the product basis's layout: every path coupled back into the input irreps
    irreps = hidden_irreps(3, 2)
    instructions = [(i1, i2, o) for i1, (_, a) in enumerate(irreps) for i2, (_, b) in enumerate(irreps)
                    for o, (_, c) in enumerate(irreps) if c in a * b]
    product = ChannelwiseTensorProduct(irreps, irreps, irreps, instructions).double()
    x, y = torch.randn(5, irreps.dim, dtype=torch.float64), torch.randn(5, irreps.dim, dtype=torch.float64)
    weight = torch.randn(5, product.weight_numel, dtype=torch.float64)
    torch.testing.assert_close(product(x, y, weight), _e3nn(product)(x, y, weight), rtol=0, atol=1e-12)


def test_second_derivatives_match_e3nn():
    # force training differentiates twice: the contraction's double backward is e3nn's too
    irreps = hidden_irreps(2, 2)
    product = depthwise_tensor_product(irreps, SH, {ir for _, ir in irreps}).double()
    reference = _e3nn(product)
    weight = torch.randn(4, product.weight_numel, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(4, SH.dim, dtype=torch.float64)
    x = torch.randn(4, irreps.dim, dtype=torch.float64)
    grads = []
    for module in (product, reference):
        y = y0.clone().requires_grad_()
        (dy,) = torch.autograd.grad(module(x, y, weight).square().sum(), y, create_graph=True)
        grads.append(torch.autograd.grad(dy.square().sum(), weight)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_double_after_a_float32_build_has_exact_coefficients():
    product = depthwise_tensor_product(hidden_irreps(2, 2), SH, {ir for _, ir in hidden_irreps(2, 2)})
    assert product.coefficients.dtype == torch.float32
    exact = depthwise_tensor_product(hidden_irreps(2, 2), SH, {ir for _, ir in hidden_irreps(2, 2)}).double()
    product.double()
    assert product.coefficients.dtype == torch.float64
    assert torch.equal(product.coefficients, exact.coefficients)
    assert product.coefficients.abs().max() > 0
    assert not torch.equal(product.coefficients.float().double(), product.coefficients)  # not float32's rounding


def test_deep_copy_computes_the_same():
    product = depthwise_tensor_product(hidden_irreps(2, 1), hidden_irreps(2, 1), {ir for _, ir in hidden_irreps(2, 1)},
                                       weights_per_sample=False)
    clone = copy.deepcopy(product)
    x = torch.randn(3, product.irreps_in1.dim)
    torch.testing.assert_close(clone(x, x), product(x, x))
    assert [name for name, _ in clone.named_buffers()] == [name for name, _ in product.named_buffers()]


def test_state_dict_holds_only_weights():
    shared = depthwise_tensor_product(hidden_irreps(2, 1), SH, {ir for _, ir in hidden_irreps(2, 1)})
    own = depthwise_tensor_product(hidden_irreps(2, 1), hidden_irreps(2, 1), {ir for _, ir in hidden_irreps(2, 1)},
                                   weights_per_sample=False)
    assert list(shared.state_dict()) == []
    assert list(own.state_dict()) == ["weight"]


@pytest.mark.parametrize("irreps1, irreps2, irreps_out, instructions, match", [
    ("2x0e+1x1o", "2x0e", "2x0e", [(0, 0, 0)], "one multiplicity"),
    ("2x0e", "3x0e", "2x0e", [(0, 0, 0)], "multiplicity 1"),
    ("2x0e", "2x0e", "3x0e", [(0, 0, 0)], "channels"),
    ("2x1o", "2x1o", "2x1o", [(0, 0, 0)], "not allowed"),
])
def test_bad_irreps_or_paths(irreps1, irreps2, irreps_out, instructions, match):
    with pytest.raises(ValueError, match=match):
        ChannelwiseTensorProduct(irreps1, irreps2, irreps_out, instructions)


def test_weights_only_when_per_sample():
    own = depthwise_tensor_product("2x0e", "2x0e", {o3.Irrep("0e")}, weights_per_sample=False)
    with pytest.raises(ValueError, match="weights_per_sample"):
        own(torch.randn(1, 2), torch.randn(1, 2), torch.randn(1, own.weight_numel))


@pytest.mark.parametrize("irreps2", [SH, hidden_irreps(2, 2)])
def test_no_samples(irreps2):
    # a graph without edges: zero messages, no reshape error
    irreps = hidden_irreps(2, 2)
    product = depthwise_tensor_product(irreps, irreps2, {ir for _, ir in irreps})
    out = product(torch.zeros(0, irreps.dim), torch.zeros(0, irreps2.dim), torch.zeros(0, product.weight_numel))
    assert out.shape == (0, product.irreps_out.dim)


def test_depthwise_squares_contract_by_blocks_shared_outputs_densely():
    # both forms are compared with e3nn above; this pins which products take which
    irreps = hidden_irreps(2, 2, "full")
    square = depthwise_tensor_product(irreps, irreps, {o3.Irrep(l, p) for l in range(5) for p in (1, -1)})
    assert len(square._groups) == len(irreps) ** 2 and not hasattr(square, "coefficients")
    shared = ChannelwiseTensorProduct(irreps, irreps, irreps, [(0, 0, 0), (1, 1, 0), (0, 1, 1)])
    assert shared._groups == () and hasattr(shared, "coefficients")
    x = torch.randn(4, irreps.dim, dtype=torch.float64)
    weight = torch.randn(4, square.weight_numel, dtype=torch.float64)
    torch.testing.assert_close(square.double()(x, x, weight), _e3nn(square)(x, x, weight), rtol=0, atol=1e-12)


@pytest.mark.parametrize("irreps2", [SH, None])
def test_channel_order_reads_e3nns_layout_from_the_channel_layout(irreps2):
    irreps = hidden_irreps(3, 2, "full")
    irreps2 = irreps if irreps2 is None else irreps2
    product = depthwise_tensor_product(irreps, irreps2, {o3.Irrep(l, p) for l in range(4) for p in (1, -1)})
    x, y = torch.randn(5, irreps.dim), torch.randn(5, irreps2.dim)
    out = product.contract(product.to_channels(x), product.to_channels(y, 2), torch.randn(5, product.weight_numel))
    torch.testing.assert_close(out.flatten(1)[:, product.channel_order()], product.from_channels(out), rtol=0, atol=0)
