"""Spectral estimators that only need matrix-vector products with a symmetric matrix.

Used on Hessians (:class:`zoo.analysis.HessianOperator`), following PyHessian (Yao et al. 2020)
and Ghorbani et al. (2019); every function takes ``matvec``, a callable on flat vectors of
``dim`` entries, and an optional :class:`torch.Generator` for reproducible random vectors.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Matvec = Callable[[torch.Tensor], torch.Tensor]


def _float_options(matvec, dtype, device) -> dict:
    # HessianOperator knows the parameters' dtype and device; plain callables use the defaults
    return {"dtype": dtype or getattr(matvec, "dtype", torch.get_default_dtype()),
            "device": device or getattr(matvec, "device", None)}


def _rademacher(dim: int, generator, **options) -> torch.Tensor:
    signs = torch.randint(0, 2, (dim,), generator=generator)
    return (2 * signs - 1).to(**options)


def _check_dim(dim: int) -> None:
    if dim < 1:
        raise ValueError(f"the matrix must have at least one row, got dim={dim}")


def top_eigenvalues(
    matvec: Matvec,
    dim: int,
    k: int = 1,
    max_iter: int = 100,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` eigenvalues of largest magnitude, by power iteration with deflation.

    Eigenpairs are found one after the other; each iteration projects the previous eigenvectors
    out of the iterate, so the next power iteration converges to the next largest ``|λ|``. An
    iteration stops when the Rayleigh quotient changes by less than ``tol`` relative to itself.

    Returns:
        ``(values [k], vectors [k, dim])`` in the order found (decreasing magnitude), values
        signed. Near-degenerate pairs converge slowly; raise ``max_iter`` for them.

    Raises:
        ValueError: ``k`` is not in 1..dim.
    """
    _check_dim(dim)
    if not 1 <= k <= dim:
        raise ValueError(f"k must be between 1 and the dimension {dim}, got {k}")
    options = _float_options(matvec, dtype, device)
    values, vectors = [], torch.zeros(0, dim, **options)

    def deflate(x):
        return x - vectors.T @ (vectors @ x)

    for _ in range(k):
        v = deflate(torch.randn(dim, generator=generator).to(**options))
        v = v / v.norm()
        value = None
        for _ in range(max_iter):
            w = deflate(matvec(v))
            rayleigh = float(v @ w)
            norm = w.norm()
            if norm <= torch.finfo(w.dtype).tiny:
                value = 0.0  # v lies in the null space of what is left of the matrix
                break
            v = w / norm
            converged = value is not None and abs(rayleigh - value) <= tol * abs(value)
            value = rayleigh
            if converged:
                break
        values.append(value)
        vectors = torch.cat([vectors, v.unsqueeze(0)])
    return torch.tensor(values, dtype=options["dtype"]), vectors


def hutchinson_trace(
    matvec: Matvec,
    dim: int,
    num_samples: int = 100,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device=None,
) -> tuple[float, float]:
    """Hutchinson's estimate of the trace, the mean of ``vᵀ A v`` over Rademacher vectors ``v``.

    Returns:
        ``(trace, standard error)``; the standard error is 0 for a single sample.
    """
    _check_dim(dim)
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    options = _float_options(matvec, dtype, device)
    samples = []
    for _ in range(num_samples):
        v = _rademacher(dim, generator, **options)
        samples.append(float(v @ matvec(v)))
    samples = torch.tensor(samples, dtype=torch.float64)
    error = float(samples.std() / math.sqrt(num_samples)) if num_samples > 1 else 0.0
    return float(samples.mean()), error


def lanczos(matvec: Matvec, start: torch.Tensor, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The Lanczos tridiagonalisation from ``start``, with full re-orthogonalisation.

    Each new Lanczos vector is orthogonalised (twice, classical Gram–Schmidt) against all the
    previous ones: in floating point, the three-term recurrence alone loses orthogonality and
    produces spurious copies of the extreme eigenvalues. The iteration stops early when the
    Krylov space is invariant (``β`` vanishes), e.g. after ``dim`` steps.

    Returns:
        ``(alpha [m], beta [m - 1])``, the diagonal and off-diagonal of the tridiagonal matrix T,
        with m <= num_steps.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    norm = start.norm()
    if not norm > 0:
        raise ValueError("the Lanczos start vector is zero")
    basis = [start / norm]
    alpha, beta = [], []
    scale = 0.0
    for step in range(num_steps):
        w = matvec(basis[-1])
        alpha.append(float(basis[-1] @ w))
        q = torch.stack(basis)
        for _ in range(2):
            w = w - q.T @ (q @ w)
        b = float(w.norm())
        scale = max(scale, abs(alpha[-1]), b)
        if step == num_steps - 1 or b <= 1e3 * torch.finfo(w.dtype).eps * max(scale, 1e-30) \
                or len(basis) == start.numel():
            break
        beta.append(b)
        basis.append(w / b)
    return torch.tensor(alpha, dtype=torch.float64), torch.tensor(beta, dtype=torch.float64)


def stochastic_lanczos_quadrature(
    matvec: Matvec,
    dim: int,
    num_steps: int = 30,
    num_vectors: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectral density as a weighted sum of Dirac peaks, by stochastic Lanczos quadrature.

    For each of ``num_vectors`` random unit start vectors (Rademacher / sqrt(dim)), :func:`lanczos`
    gives a tridiagonal T = U diag(θ) Uᵀ; its eigenvalues θ (Ritz values) are the quadrature
    nodes and the squared first components ``U[0, :]²`` their weights. Averaged over vectors,
    ``sum_i w_i f(θ_i) ≈ tr f(A) / dim``: the weights sum to 1 and ``dim * sum_i w_i θ_i``
    estimates the trace.

    Returns:
        ``(nodes [n], weights [n])`` in float64, all vectors' nodes concatenated.
    """
    _check_dim(dim)
    if num_vectors < 1:
        raise ValueError(f"num_vectors must be >= 1, got {num_vectors}")
    options = _float_options(matvec, dtype, device)
    nodes, weights = [], []
    for _ in range(num_vectors):
        start = _rademacher(dim, generator, **options) / math.sqrt(dim)
        alpha, beta = lanczos(matvec, start, min(num_steps, dim))
        tridiagonal = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
        theta, eigenvectors = torch.linalg.eigh(tridiagonal)
        nodes.append(theta)
        weights.append(eigenvectors[0].square() / num_vectors)
    return torch.cat(nodes), torch.cat(weights)


def spectral_density(nodes: torch.Tensor, weights: torch.Tensor, grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """The density ``sum_i w_i N(x; θ_i, σ²)`` on ``grid``: SLQ's peaks broadened for plotting."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    x = (grid.to(torch.float64).unsqueeze(-1) - nodes.to(torch.float64)) / sigma
    return (weights.to(torch.float64) * torch.exp(-0.5 * x.square())).sum(-1) / (sigma * math.sqrt(2 * math.pi))
