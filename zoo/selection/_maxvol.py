"""Maxvol (square) and Fedorov exchange (rectangular) selection, and the extrapolation grade."""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from zoo.selection._checks import as_features, check_full_rank, check_k
from zoo.selection._doptimal import greedy_d_optimal


def maxvol(X, k: int | None = None, tol: float = 1.05, max_iter: int = 1000) -> np.ndarray:
    """Rows of ``X`` spanning a (locally) maximal volume, by exchange.

    The volume is ``sqrt(det(X_Sᵀ X_S))``, ``|det X_S|`` for a square ``S`` (``k = d``). Starting
    from :func:`greedy_d_optimal`, each step makes the exchange of a chosen row ``s`` for an
    outside row ``c`` that grows the volume most, while it grows by more than ``tol``. With
    ``M = X_Sᵀ X_S`` the determinant ratio of that exchange is Fedorov's
    ``(1 + d_c)(1 - d_s) + d_cs²`` with ``d_ab = x_a M⁻¹ x_bᵀ``; for ``k = d`` it is ``B_cs²``
    with ``B = X X_S⁻¹``, so this is Goreinov–Tyrtyshnikov maxvol, and on return every row has
    coefficients ``|B_cs| <= tol`` in the chosen basis (a ``tol``-dominant submatrix).
    Each step recomputes ``B`` in ``O(N k d)``, simpler and more stable than rank-one updates.

    Args:
        X: features [N, d] of full column rank.
        k: number of rows, ``d <= k <= N``; ``d`` when omitted.
        tol: minimal volume growth factor of an exchange, ``>= 1``.
        max_iter: maximal number of exchanges (a warning says when they run out).

    Returns:
        The chosen row indices [k] (sorted).
    """
    X = as_features(X)
    n, d = X.shape
    k = check_k(d if k is None else k, n)
    if k < d:
        raise ValueError(
            f"maxvol needs at least as many rows as features (k={k} < d={d}); use greedy_d_optimal, "
            "or fewer features"
        )
    if tol < 1:
        raise ValueError(f"tol must be >= 1 (a growth factor of the volume), got {tol}")
    check_full_rank(X)
    # a tiny ridge only to start; the full-rank check makes the greedy rows a basis
    selected = greedy_d_optimal(X, k, ridge=1e-10 * np.mean(X**2))
    for _ in range(max_iter):
        ratio = _exchange_ratios(X, selected)
        c, s = np.unravel_index(np.argmax(ratio), ratio.shape)
        if np.sqrt(ratio[c, s]) <= tol:
            break
        selected[s] = c
    else:
        warnings.warn(f"maxvol stopped after max_iter={max_iter} exchanges before reaching tol={tol}", stacklevel=2)
    return np.sort(selected)


def _exchange_ratios(X: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """det ratio [N, k] of replacing chosen row s by row c; 0 for rows already chosen."""
    rows = X[selected]
    projected = scipy.linalg.solve(rows.T @ rows, X.T, assume_a="pos").T  # X M⁻¹
    leverage = np.einsum("ij,ij->i", projected, X)
    # for k = d, 1 - d_s vanishes and G = X M⁻¹ X_Sᵀ = X X_S⁻¹ (maxvol's B)
    G = projected @ rows.T
    ratio = np.outer(1 + leverage, np.clip(1 - leverage[selected], 0.0, None)) + G**2
    ratio[selected] = 0.0
    return ratio


def extrapolation_grade(X_selected, X_candidates) -> np.ndarray:
    """Podryabinkin–Shapeev extrapolation grade of each candidate w.r.t. an active set.

    A candidate ``x`` written in the active set's rows, ``x = c A`` (``c = x A⁻¹`` for a square
    ``A``; the least-norm ``c = x A⁺`` for more rows than features), has grade
    ``γ = max_j |c_j|``: ``γ <= 1`` when ``x`` lies within the parallelotope the active set spans
    (interpolation; always so for a maxvol set's own pool up to ``tol``), ``γ > 1`` beyond it
    (extrapolation: label it, or trust the model less).

    Args:
        X_selected: the active set's features [k, d], ``k >= d``, of full column rank.
        X_candidates: features [M, d].

    Returns:
        γ [M].
    """
    A = as_features(X_selected, "X_selected")
    X = as_features(X_candidates, "X_candidates")
    if X.shape[1] != A.shape[1]:
        raise ValueError(f"X_candidates have {X.shape[1]} features, X_selected {A.shape[1]}")
    if A.shape[0] < A.shape[1]:
        raise ValueError(f"the active set needs at least d={A.shape[1]} rows, got {A.shape[0]}")
    check_full_rank(A, "X_selected")
    coefficients = np.linalg.lstsq(A.T, X.T, rcond=None)[0].T
    return np.abs(coefficients).max(axis=1)
