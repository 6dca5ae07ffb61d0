import numpy as np
import pytest

from zoo.selection import farthest_point, random_selection


def test_farthest_point_reaches_the_ends_of_a_line():
    line = np.linspace(0.0, 1.0, 21)[:, None]
    for seed in range(5):
        order = farthest_point(line, 3, seed=seed)
        # from any start the next pick is the farther end
        assert order[1] == (0 if order[0] > 10 else 20)
    # a dense middle and two ends: the ends come before the middle is revisited
    X = np.array([[-1.0], [0.0], [0.01], [-0.01], [1.0]])
    assert set(farthest_point(X, 3, seed=1)) >= {0, 4}


def test_farthest_point_never_repeats_duplicates():
    X = np.zeros((4, 2))
    assert sorted(farthest_point(X, 4)) == [0, 1, 2, 3]


def test_random_selection_is_reproducible_and_checked():
    assert random_selection(10, 4, seed=3).tolist() == random_selection(10, 4, seed=3).tolist()
    assert len(set(random_selection(10, 10).tolist())) == 10
    with pytest.raises(ValueError, match="k=11 is larger than the pool of 10"):
        random_selection(10, 11)
