import math

import pytest
import torch

from zoo.nn import BesselBasis, GaussianBasis, RadialEmbedding


def test_bessel_basis_formula():
    r = torch.tensor([0.5, 1.7, 3.9], dtype=torch.float64)
    values = BesselBasis(4.0, 5).double()(r)
    n = torch.arange(1, 6, dtype=torch.float64)
    expected = math.sqrt(2 / 4.0) * torch.sin(n * math.pi * r[:, None] / 4.0) / r[:, None]
    assert values.shape == (3, 5)
    assert torch.allclose(values, expected)


def test_bessel_functions_are_orthogonal_on_the_cutoff_sphere():
    # with the r^2 measure of 3D space the Bessel functions are orthonormal on [0, cutoff]
    r = torch.linspace(1e-6, 3.0, 20001, dtype=torch.float64)
    f = BesselBasis(3.0, 4)(r)
    gram = torch.trapezoid(f[:, :, None] * f[:, None, :] * r[:, None, None] ** 2, r, dim=0)
    assert torch.allclose(gram, torch.eye(4, dtype=torch.float64), atol=1e-6)


def test_gaussian_basis_peaks_at_its_centres():
    basis = GaussianBasis(5.0, 6)
    values = basis(basis.centres())
    assert torch.allclose(values.diagonal(), torch.ones(6))
    assert (values.argmax(dim=1) == torch.arange(6)).all()


@pytest.mark.parametrize("basis", ["bessel", "gaussian"])
def test_embedding_goes_smoothly_to_zero_at_cutoff(basis):
    embedding = RadialEmbedding(3.0, 6, basis)
    r = torch.tensor([3.0 - 1e-7, 3.0, 3.5], dtype=torch.float64, requires_grad=True)
    values = embedding(r)
    (slope,) = torch.autograd.grad(values.sum(), r)
    assert values.abs().max() < 1e-12 and slope.abs().max() < 1e-9
    assert embedding(torch.tensor([1.0])).abs().min() > 0


def test_embedding_follows_input_dtype():
    embedding = RadialEmbedding(5.0, 8)
    assert embedding(torch.rand(4, dtype=torch.float64) + 0.5).dtype == torch.float64
    assert embedding(torch.rand(4) + 0.5).dtype == torch.float32


def test_unknown_basis():
    with pytest.raises(ValueError, match="bessel"):
        RadialEmbedding(5.0, 8, "chebyshev")
