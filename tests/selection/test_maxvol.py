import itertools

import numpy as np
import pytest

from zoo.selection import extrapolation_grade, log_det_information, maxvol


def brute_force_max_log_det(X, k):
    return max(log_det_information(X, rows) for rows in itertools.combinations(range(len(X)), k))


def test_square_maxvol_finds_the_max_volume_submatrix():
    X = np.random.default_rng(0).normal(size=(12, 3))
    chosen = maxvol(X, tol=1.0)
    assert log_det_information(X, chosen) == pytest.approx(brute_force_max_log_det(X, 3), abs=2 * np.log(1.05))
    # tol-dominance: every row is a combination of the chosen rows with coefficients <= tol
    assert extrapolation_grade(X[chosen], X).max() <= 1.0 + 1e-9


def test_known_maximum_is_found():
    X = np.random.default_rng(1).uniform(-1, 1, size=(40, 2))
    X[[5, 30]] = [[4.0, 0.0], [0.0, 4.0]]
    assert maxvol(X).tolist() == [5, 30]


def test_rectangular_exchange_is_locally_optimal():
    X = np.random.default_rng(2).normal(size=(10, 2))
    tol = 1.01
    chosen = maxvol(X, k=4, tol=tol)
    best = log_det_information(X, chosen)
    # no single exchange grows the volume by more than tol (det by more than tol²)
    for s, c in itertools.product(range(4), sorted(set(range(10)) - set(chosen))):
        swapped = chosen.copy()
        swapped[s] = c
        assert log_det_information(X, swapped) <= best + 2 * np.log(tol) + 1e-9
    assert best >= brute_force_max_log_det(X, 4) - 1.0  # and near the global optimum here


def test_extrapolation_grade_interpolation_and_outlier():
    active = np.eye(3)
    inside = np.array([[0.2, 0.3, -0.5], [1.0, 0.0, 0.0]])
    outlier = np.array([[3.0, 0.0, 0.0]])
    assert np.all(extrapolation_grade(active, inside) <= 1.0)
    assert extrapolation_grade(active, outlier)[0] == pytest.approx(3.0)


def test_degenerate_features_report_the_rank():
    X = np.random.default_rng(3).normal(size=(20, 2)) @ np.ones((2, 4))  # rank 1, 4 features
    with pytest.raises(ValueError, match="rank 1 < 4 features.*fewer features"):
        maxvol(X)
    with pytest.raises(ValueError, match="rank-deficient"):
        extrapolation_grade(X[:4], X)
    with pytest.raises(ValueError, match="k=2 < d=4"):
        maxvol(X, k=2)
    with pytest.raises(ValueError, match="larger than the pool"):
        maxvol(X, k=21)


def test_warns_when_exchanges_run_out():
    X = np.random.default_rng(4).normal(size=(30, 3))
    with pytest.warns(UserWarning, match="max_iter=0"):
        maxvol(X, k=4, max_iter=0)
