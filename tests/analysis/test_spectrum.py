import math

import pytest
import torch

from zoo.analysis import (
    HessianOperator,
    hessian_vector_product,
    hutchinson_trace,
    lanczos,
    select_parameters,
    spectral_density,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)


def _symmetric(eigenvalues, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigenvalues), len(eigenvalues), generator=gen, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ q.T


def test_quadratic_loss_hessian_is_the_matrix():
    # L = ½ θᵀAθ + bᵀθ has H = A exactly, whatever θ
    a = _symmetric([5.0, 3.0, -1.0, 0.5, 0.0])
    theta = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    loss = 0.5 * theta @ a @ theta + theta.sum()
    operator = HessianOperator(loss, {"theta": theta})
    for v in torch.eye(5, dtype=torch.float64):
        assert torch.allclose(operator(v), a @ v)
    values, vectors = top_eigenvalues(operator, operator.dim, k=3, max_iter=500, tol=1e-12,
                                      generator=torch.Generator().manual_seed(0))
    assert torch.allclose(values, torch.tensor([5.0, 3.0, -1.0], dtype=torch.float64), atol=1e-6)
    assert torch.allclose(vectors @ vectors.T, torch.eye(3, dtype=torch.float64), atol=1e-6)
    assert torch.allclose((a @ vectors.T).T, values[:, None] * vectors, atol=1e-4)


def test_least_squares_hessian_over_two_parameter_tensors():
    # L = |Xw + c - y|² / (2n): H over (w, c) is [X 1]ᵀ[X 1] / n
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(40, 3, generator=gen, dtype=torch.float64), torch.randn(40, generator=gen, dtype=torch.float64)
    model = torch.nn.Linear(3, 1).double()
    loss = 0.5 * (model(x)[:, 0] - y).square().mean()
    design = torch.cat([x, torch.ones(40, 1, dtype=torch.float64)], dim=1)
    exact = design.T @ design / 40
    operator = HessianOperator(loss, select_parameters(model))
    assert operator.names == ["weight", "bias"]
    hessian = torch.stack([operator(v) for v in torch.eye(4, dtype=torch.float64)])
    assert torch.allclose(hessian, exact)
    trace, error = hutchinson_trace(operator, 4, num_samples=4000, generator=gen)
    assert abs(trace - exact.trace().item()) < 4 * error + 1e-12
    values, _ = top_eigenvalues(operator, 4, k=2, max_iter=1000, tol=1e-13, generator=gen)
    assert torch.allclose(values, torch.linalg.eigvalsh(exact).flip(0)[:2], rtol=1e-6)


def test_hvp_matches_finite_differences_of_gradients():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    parameters = select_parameters(net, ["0.*"])  # the first layer only
    assert list(parameters) == ["0.weight", "0.bias"]
    flat = lambda: torch.cat([p.reshape(-1) for p in parameters.values()])  # noqa: E731

    def gradient():
        loss = torch.nn.functional.mse_loss(net(x), y)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(parameters.values()))])

    v = torch.randn(flat().numel(), dtype=torch.float64)
    hv = hessian_vector_product(torch.nn.functional.mse_loss(net(x), y), parameters, v)
    eps, centre = 1e-5, flat().detach().clone()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(centre + eps * v, parameters.values())
    plus = gradient()
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(centre - eps * v, parameters.values())
    minus = gradient()
    assert torch.allclose(hv, (plus - minus) / (2 * eps), rtol=1e-6, atol=1e-9)


def test_hutchinson_is_exact_on_diagonal_matrices():
    # Rademacher vectors: vᵀDv = tr D for every sample, so the estimate has no variance
    d = torch.tensor([3.0, -2.0, 7.0, 0.25], dtype=torch.float64)
    trace, error = hutchinson_trace(lambda v: d * v, 4, num_samples=5, dtype=torch.float64)
    assert trace == pytest.approx(8.25) and error == pytest.approx(0.0)


def test_slq_reproduces_moments_and_full_spectrum():
    eigenvalues = torch.tensor([4.0, 2.0, 1.0, 0.5, -0.5, -3.0], dtype=torch.float64)
    a = _symmetric(eigenvalues, seed=2)
    gen = torch.Generator().manual_seed(3)
    nodes, weights = stochastic_lanczos_quadrature(lambda v: a @ v, 6, num_steps=6, num_vectors=1,
                                                   generator=gen, dtype=torch.float64)
    # six steps on a 6x6 matrix: the Ritz values are the eigenvalues
    assert torch.allclose(nodes.sort().values, eigenvalues.sort().values, atol=1e-8)
    assert weights.sum().item() == pytest.approx(1.0)
    # m Lanczos steps integrate polynomials up to degree 2m - 1 exactly: sum w θ^p = vᵀAᵖv
    gen = torch.Generator().manual_seed(4)
    start = (2.0 * torch.randint(0, 2, (6,), generator=gen) - 1).double() / math.sqrt(6)
    alpha, beta = lanczos(lambda v: a @ v, start, 3)
    theta, u = torch.linalg.eigh(torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1))
    for p in range(6):
        assert (u[0].square() * theta**p).sum().item() == pytest.approx(
            (start @ torch.linalg.matrix_power(a, p) @ start).item(), rel=1e-8, abs=1e-10)


def test_slq_trace_and_density():
    a = _symmetric(torch.linspace(-1.0, 10.0, 50), seed=5)
    gen = torch.Generator().manual_seed(6)
    nodes, weights = stochastic_lanczos_quadrature(lambda v: a @ v, 50, num_steps=20, num_vectors=30,
                                                   generator=gen, dtype=torch.float64)
    assert weights.sum().item() == pytest.approx(1.0)
    assert nodes.max().item() == pytest.approx(10.0, rel=1e-4) and nodes.min().item() == pytest.approx(-1.0, rel=1e-4)
    assert 50 * (weights * nodes).sum().item() == pytest.approx(a.trace().item(), rel=0.1)
    grid = torch.linspace(-5, 15, 2001)
    density = spectral_density(nodes, weights, grid, sigma=0.5)
    assert (density.sum() * (grid[1] - grid[0])).item() == pytest.approx(1.0, rel=1e-3)


def test_lanczos_stops_on_an_invariant_subspace():
    # the start vector lies in a 2-dimensional eigenspace sum: two steps, then β = 0
    d = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    alpha, beta = lanczos(lambda v: d * v, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64), 4)
    assert len(alpha) == 2 and len(beta) == 1


def test_degenerate_cases():
    # a zero matrix: eigenvalue 0, trace 0, all the density at 0
    zero = lambda v: torch.zeros_like(v)  # noqa: E731
    values, _ = top_eigenvalues(zero, 3, k=2)
    assert values.tolist() == [0.0, 0.0]
    assert hutchinson_trace(zero, 3, num_samples=3) == (0.0, 0.0)
    nodes, weights = stochastic_lanczos_quadrature(zero, 3, num_steps=5)
    assert nodes.tolist() == [0.0] and weights.tolist() == [1.0]
    # a loss linear in the parameters has a zero Hessian
    theta = torch.nn.Parameter(torch.ones(3))
    assert HessianOperator((2 * theta).sum(), [theta])(torch.ones(3)).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="between 1 and the dimension 3"):
        top_eigenvalues(zero, 3, k=4)
    with pytest.raises(ValueError, match="at least one row"):
        hutchinson_trace(zero, 0)
    with pytest.raises(ValueError, match="start vector is zero"):
        lanczos(zero, torch.zeros(3), 2)
    with pytest.raises(ValueError, match="sigma must be positive"):
        spectral_density(nodes, weights, torch.zeros(3), 0.0)


def test_bad_parameters_are_named():
    net = torch.nn.ModuleDict({"used": torch.nn.Linear(2, 1), "unused": torch.nn.Linear(2, 1)})
    loss = net["used"](torch.ones(1, 2)).square().sum()
    with pytest.raises(ValueError, match=r"\['unused.weight', 'unused.bias'\] receive no gradient"):
        HessianOperator(loss, select_parameters(net))
    with pytest.raises(ValueError, match=r"patterns \['trunk.\*'\] match no trainable parameter.*used.bias"):
        select_parameters(net, ["used.*", "trunk.*"])
    with pytest.raises(ValueError, match="must be a scalar"):
        HessianOperator(net["used"](torch.ones(2, 2)), select_parameters(net, ["used.*"]))
    with pytest.raises(ValueError, match="no autograd graph"):
        HessianOperator(torch.tensor(1.0), select_parameters(net, ["used.*"]))
