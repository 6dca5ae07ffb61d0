"""Generalised eigensolver against SciPy; gradients by gradcheck and at exact degeneracy."""

import numpy as np
import pytest
import scipy.linalg
import torch

from zoo.qc.eigh import density_matrix, generalized_eigh, generalized_eigh_list, orthogonalizer


def _problem(n=5, seed=0, batch=()):
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(*batch, n, n, generator=gen, dtype=torch.float64)
    b = torch.randn(*batch, n, n, generator=gen, dtype=torch.float64)
    return 0.5 * (a + a.mT), b @ b.mT / n + torch.eye(n, dtype=torch.float64)


def test_matches_scipy_batched_and_listed():
    h, s = _problem(batch=(3,))
    energies, c = generalized_eigh(h, s)
    for k in range(3):
        ref = scipy.linalg.eigh(h[k].numpy(), s[k].numpy(), eigvals_only=True)
        np.testing.assert_allclose(energies[k].numpy(), ref, atol=1e-10)
        np.testing.assert_allclose((c[k].T @ s[k] @ c[k]).numpy(), np.eye(5), atol=1e-10)
        np.testing.assert_allclose((h[k] @ c[k]).numpy(), (s[k] @ c[k] * energies[k]).numpy(), atol=1e-10)
    listed = generalized_eigh_list([h[0], h[1][:4, :4]], [s[0], s[1][:4, :4]])
    assert listed[1][1].shape == (4, 4)
    np.testing.assert_allclose(listed[0][0].numpy(), energies[0].numpy(), atol=1e-12)


def test_lindep_drops_near_linear_dependence():
    h, _ = _problem(n=4)
    v = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64))[0]
    s = v @ torch.diag(torch.tensor([1e-10, 0.5, 1.0, 2.0], dtype=torch.float64)) @ v.T
    x = orthogonalizer(s, lindep=1e-7)
    assert x.shape == (4, 3)
    energies, c = generalized_eigh(h, s, lindep=1e-7)
    assert energies.shape == (3,) and c.shape == (4, 3)
    np.testing.assert_allclose((c.T @ s @ c).numpy(), np.eye(3), atol=1e-8)


def test_gradcheck_non_degenerate():
    h0, s0 = _problem(n=4, seed=1)
    weights = torch.tensor([2.0, 1.0, 0.5, 0.0], dtype=torch.float64)

    def f(a, b):
        # symmetric inputs; a weighted density is invariant to the eigenvector signs
        h, s = 0.5 * (a + a.mT), b @ b.mT + torch.eye(4, dtype=torch.float64)
        energies, c = generalized_eigh(h, s)
        return energies, (c * weights) @ c.mT

    b0 = torch.linalg.cholesky(s0 - torch.eye(4, dtype=torch.float64))
    assert torch.autograd.gradcheck(f, (h0.clone().requires_grad_(), b0.clone().requires_grad_()))


def test_degenerate_orbitals_give_finite_exact_gradients():
    # H = diag(−1, −1, 0.5, 2) with S = 1 has an exactly degenerate occupied pair
    h = torch.diag(torch.tensor([-1.0, -1.0, 0.5, 2.0], dtype=torch.float64))
    rotation = torch.linalg.qr(torch.randn(4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64))[0]
    h = rotation @ h @ rotation.T
    s = torch.eye(4, dtype=torch.float64)
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def loss(hh):
        return (weight * density_matrix(generalized_eigh(hh, s)[1], 2)).sum()

    h_var = h.clone().requires_grad_()
    (grad,) = torch.autograd.grad(loss(h_var), h_var)
    assert torch.isfinite(grad).all()
    # the density of a filled degenerate shell is smooth: compare with central differences
    numeric = torch.zeros_like(h)
    step = 1e-6
    for i in range(4):
        for j in range(i, 4):
            e = torch.zeros_like(h)
            e[i, j] = e[j, i] = step
            numeric[i, j] = numeric[j, i] = (loss(h + e) - loss(h - e)) / (2 * step) / (1 if i == j else 2)
    np.testing.assert_allclose(grad.numpy(), numeric.numpy(), atol=1e-6)
    # and the energies of the degenerate pair still have finite gradients
    h_var = h.clone().requires_grad_()
    energies, c = generalized_eigh(h_var, s)
    (energies.sum() + c.sum()).backward()
    assert torch.isfinite(h_var.grad).all()


def test_density_matrix_batched_occupations():
    _, c = generalized_eigh(*_problem(batch=(2,)))
    d = density_matrix(c, torch.tensor([1, 2]))
    np.testing.assert_allclose(d[1].numpy(), (2 * c[1][:, :2] @ c[1][:, :2].T).numpy(), atol=1e-12)
    h, s = _problem(batch=(2,))
    electrons = torch.einsum("bij,bji->b", density_matrix(c, torch.tensor([1, 2])), s)
    assert torch.allclose(electrons, torch.tensor([2.0, 4.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="outside"):
        density_matrix(c, 9)
