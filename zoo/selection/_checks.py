"""Input checks shared by the selection algorithms, so that every method fails the same way."""

from __future__ import annotations

import numpy as np


def as_features(X, name: str = "X") -> np.ndarray:
    """``X`` (numpy or torch, [N, d]) as a float64 array, refusing NaN/inf and empty input."""
    if hasattr(X, "detach"):  # torch tensors, without importing torch here
        X = X.detach().cpu().numpy()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty feature matrix [N, d], got shape {X.shape}")
    bad = ~np.isfinite(X).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"{name} has NaN or infinite features in {bad.sum()} of {X.shape[0]} rows "
            f"(first: {rows[:5].tolist()}); drop or fix those structures"
        )
    return X


def check_k(k: int, n: int) -> int:
    """``k`` as an int in [1, n]; ``n`` is the pool size."""
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    if k > n:
        raise ValueError(f"k={k} is larger than the pool of {n} candidates")
    return int(k)


def check_full_rank(X: np.ndarray, name: str = "X") -> None:
    """Refuse features whose rank is below their number of columns (no d-dimensional basis exists)."""
    rank = int(np.linalg.matrix_rank(X))
    if rank < X.shape[1]:
        raise ValueError(
            f"{name} is rank-deficient: rank {rank} < {X.shape[1]} features, so no set of rows spans the "
            f"feature space; use fewer features (e.g. project onto the top {rank} principal components) "
            "or greedy_d_optimal with a ridge"
        )
