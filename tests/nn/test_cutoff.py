import pytest
import torch

from zoo.nn import PolynomialCutoff


def test_one_at_origin_zero_beyond_cutoff():
    envelope = PolynomialCutoff(4.0)
    r = torch.tensor([0.0, 4.0, 4.5, 10.0], dtype=torch.float64)
    assert torch.allclose(envelope(r), torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))


def test_decreases_monotonically_inside():
    values = PolynomialCutoff(4.0)(torch.linspace(0.0, 4.0, 200, dtype=torch.float64))
    assert (values.diff() <= 1e-15).all()


@pytest.mark.parametrize("p", [3, 6])
def test_value_and_two_derivatives_vanish_at_cutoff(p):
    envelope = PolynomialCutoff(5.0, p)
    r = torch.tensor([5.0 - 1e-9, 5.0], dtype=torch.float64, requires_grad=True)
    u = envelope(r)
    (du,) = torch.autograd.grad(u.sum(), r, create_graph=True)
    (d2u,) = torch.autograd.grad(du.sum(), r)
    assert u.abs().max() < 1e-12 and du.abs().max() < 1e-12 and d2u.abs().max() < 1e-6


def test_bad_arguments():
    with pytest.raises(ValueError):
        PolynomialCutoff(0.0)
