"""Greedy D-optimal design: the rows that maximise log det(X_Sᵀ X_S + λI)."""

from __future__ import annotations

import numpy as np

from zoo.selection._checks import as_features, check_k


def greedy_d_optimal(X, k: int, ridge: float = 1e-6) -> np.ndarray:
    """Greedily choose ``k`` rows of ``X`` that maximise the D-optimality criterion.

    With ``M = λI + X_Sᵀ X_S`` for the chosen set ``S``, adding row ``x`` multiplies ``det M`` by
    ``1 + x M⁻¹ xᵀ`` (matrix determinant lemma), so each step takes the candidate of largest
    leverage ``x M⁻¹ xᵀ``, i.e. the one the current design predicts worst, and updates ``M⁻¹`` by
    Sherman–Morrison. The ridge ``λ`` makes ``M`` invertible before ``d`` rows are chosen and
    keeps picking sensibly when ``k`` exceeds the rank of ``X``. Cost ``O(k N d)`` plus ``O(k d²)``.

    Args:
        X: features [N, d] (numpy or torch).
        k: number of rows to choose, ``1 <= k <= N``.
        ridge: ``λ > 0``; relative to the features' scale, so standardise them first.

    Returns:
        The chosen row indices [k], in the order they were picked.
    """
    X = as_features(X)
    k = check_k(k, X.shape[0])
    if not ridge > 0:
        raise ValueError(f"ridge must be positive (M = λI + XᵀX must start invertible), got {ridge}")
    M_inv = np.eye(X.shape[1]) / ridge
    # leverage of every row under the current design, kept up to date by rank-one downdates
    projected = X @ M_inv
    leverage = np.einsum("ij,ij->i", projected, X)
    chosen = np.zeros(X.shape[0], dtype=bool)
    order = []
    for _ in range(k):
        i = int(np.argmax(np.where(chosen, -np.inf, leverage)))
        order.append(i)
        chosen[i] = True
        u = M_inv @ X[i]
        denominator = 1.0 + X[i] @ u
        M_inv -= np.outer(u, u) / denominator
        leverage -= (X @ u) ** 2 / denominator
    return np.asarray(order)


def log_det_information(X, indices, ridge: float = 0.0) -> float:
    """``log det(X_Sᵀ X_S + λI)`` of the rows ``indices``; ``-inf`` when singular.

    The D-optimality of a selection, to compare methods (higher is better).
    """
    X = as_features(X)
    rows = X[np.asarray(indices, dtype=int)]
    sign, value = np.linalg.slogdet(rows.T @ rows + ridge * np.eye(X.shape[1]))
    return float(value) if sign > 0 else -np.inf
