import torch
from e3nn import o3

from zoo.nn import DepthwiseConvolution


def _w3j(module):
    return {name: b for name, b in module.named_buffers() if "_w3j_" in name}


def _conv():
    return DepthwiseConvolution("2x0e+2x1o+2x2e", o3.Irreps.spherical_harmonics(2), "2x0e+2x1o+2x2e", num_radial=4)


def test_double_gets_exact_coefficients():
    conv = _conv().double()
    assert _w3j(conv)
    for name, buffer in _w3j(conv).items():
        l1, l2, l3 = map(int, name.split("_w3j_")[1].split("_"))
        assert buffer.dtype == torch.float64
        assert torch.equal(buffer, o3.wigner_3j(l1, l2, l3, dtype=torch.float64))


def test_loading_a_float32_state_dict_keeps_exact_coefficients():
    conv = _conv().double()
    exact = {name: b.clone() for name, b in _w3j(conv).items()}
    conv.load_state_dict(_conv().state_dict())
    assert all(torch.equal(b, exact[name]) for name, b in _w3j(conv).items())
