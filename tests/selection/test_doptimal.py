import numpy as np
import pytest
import torch

from zoo.selection import greedy_d_optimal, log_det_information, random_selection


def spread_and_clustered():
    """Three orthogonal far rows hidden among many small rows near the origin."""
    rng = np.random.default_rng(0)
    X = 0.01 * rng.normal(size=(50, 3))
    X[[7, 21, 40]] = 10 * np.eye(3)
    return X


def test_picks_the_spread_out_rows():
    assert sorted(greedy_d_optimal(spread_and_clustered(), 3)) == [7, 21, 40]


def test_beats_random_on_log_det():
    X = np.random.default_rng(1).normal(size=(300, 6)) * np.array([5, 3, 2, 1, 0.5, 0.1])
    greedy = log_det_information(X, greedy_d_optimal(X, 12))
    for seed in range(5):
        assert greedy >= log_det_information(X, random_selection(len(X), 12, seed))


def test_accepts_torch_and_handles_k_beyond_rank():
    X = torch.tensor(spread_and_clustered()[:, :2])  # rank 2
    chosen = greedy_d_optimal(X, 5, ridge=1e-3)
    assert len(set(chosen.tolist())) == 5


@pytest.mark.parametrize("k, message", [(0, "positive"), (51, "larger than the pool of 50")])
def test_bad_k(k, message):
    with pytest.raises(ValueError, match=message):
        greedy_d_optimal(spread_and_clustered(), k)


def test_nan_features_and_ridge():
    X = spread_and_clustered()
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite features in 1 of 50 rows"):
        greedy_d_optimal(X, 3)
    with pytest.raises(ValueError, match="ridge must be positive"):
        greedy_d_optimal(spread_and_clustered(), 3, ridge=0)
