"""Baselines: farthest-point sampling and uniform random selection."""

from __future__ import annotations

import numpy as np

from zoo.selection._checks import as_features, check_k


def farthest_point(X, k: int, seed: int = 0) -> np.ndarray:
    """Farthest-point sampling in Euclidean feature space.

    Starts from a random row (``seed``), then repeatedly takes the row farthest from all chosen
    ones; a space-filling design that, unlike D-optimality, ignores how features enter a model.

    Returns:
        The chosen row indices [k], in the order they were picked.
    """
    X = as_features(X)
    k = check_k(k, X.shape[0])
    order = [int(np.random.default_rng(seed).integers(X.shape[0]))]
    distance = np.linalg.norm(X - X[order[0]], axis=1)
    distance[order[0]] = -np.inf  # never re-pick a row, even among duplicates at distance 0
    for _ in range(k - 1):
        i = int(np.argmax(distance))
        order.append(i)
        distance = np.minimum(distance, np.linalg.norm(X - X[i], axis=1))
        distance[order] = -np.inf
    return np.asarray(order)


def random_selection(n: int, k: int, seed: int = 0) -> np.ndarray:
    """``k`` distinct indices out of ``range(n)``, uniformly at random (sorted)."""
    k = check_k(k, n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
