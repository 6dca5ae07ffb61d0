import json

import numpy as np
import pytest

from zoo.data.splits import Split, load_split, make_split, random_split, size_split


def _disjoint_cover(split, n):
    together = np.concatenate([split.train, split.val, split.test])
    assert np.unique(together).size == together.size
    assert together.max() < n


def test_random_split_sizes_fractions_and_determinism():
    a = random_split(100, sizes=[80, 10, 10], seed=3)
    b = random_split(100, sizes=[80, 10, 10], seed=3)
    c = random_split(100, sizes=[80, 10, 10], seed=4)
    assert a.sizes == {"train": 80, "val": 10, "test": 10}
    assert all(np.array_equal(getattr(a, s), getattr(b, s)) for s in ("train", "val", "test"))
    assert not np.array_equal(a.test, c.test)
    _disjoint_cover(a, 100)
    assert random_split(101, fractions=[0.8, 0.1, 0.1]).sizes == {"train": 81, "val": 10, "test": 10}
    assert random_split(50, sizes=[10, 5, None]).sizes == {"train": 10, "val": 5, "test": 35}
    assert random_split(50, sizes=[10, 5]).sizes == {"train": 10, "val": 5, "test": 0}
    assert a.method == "random" and a.params["seed"] == 3 and a.n == 100


@pytest.mark.parametrize("kwargs, message", [
    ({"sizes": [80, 20, 10]}, "ask for 110 structures but there are only 100"),
    ({"fractions": [0.995, 0.005, 0.0]}, "leaves the val set empty"),
    ({"sizes": [0, 10, 10]}, "leaves the train set empty"),
    ({"sizes": [10, None, None]}, "at most one size"),
    ({"fractions": [0.8, 0.3, 0.1]}, "sum to at most 1"),
    ({}, "either sizes or fractions"),
])
def test_random_split_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        random_split(100, **kwargs)


def test_size_split_is_out_of_distribution():
    n_atoms = np.array([3, 5, 8, 12, 20, 21, 22, 23, 25, 29] * 5)
    split = size_split(n_atoms, max_train_atoms=20, min_test_atoms=23, val_fraction=0.2, seed=0)
    assert n_atoms[split.train].max() <= 20 and n_atoms[split.val].max() <= 20
    assert n_atoms[split.test].min() >= 23
    assert split.sizes == {"train": 20, "val": 5, "test": 15}
    assert split.params["unused"] == 10
    _disjoint_cover(split, n_atoms.size)
    with pytest.raises(ValueError, match="test set empty.*range from 3 to 29"):
        size_split(n_atoms, max_train_atoms=20, min_test_atoms=30)
    with pytest.raises(ValueError, match="must exceed"):
        size_split(n_atoms, max_train_atoms=20, min_test_atoms=20)


def test_overlap_range_and_repeats_are_errors():
    with pytest.raises(ValueError, match="train and test sets overlap in 1"):
        Split([0, 1, 2], [3], [2])
    with pytest.raises(ValueError, match="out of range: max 9 for a dataset of 5"):
        Split([0, 9], [1], [2], n=5)
    with pytest.raises(ValueError, match="repeat"):
        Split([0, 0], [1], [2])
    with pytest.raises(ValueError, match="made for 10 structures but the dataset has 12"):
        Split([0], [1], [2], n=10).check(12)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_save_and_load_round_trip(tmp_path, suffix):
    split = random_split(30, sizes=[20, 5, 5], seed=1)
    path = split.save(tmp_path / f"split{suffix}")
    assert path.name == f"split{suffix}"
    loaded = Split.load(path)
    assert all(np.array_equal(getattr(split, s), getattr(loaded, s)) for s in ("train", "val", "test"))
    assert loaded.n == 30 and loaded.params["seed"] == 1 and loaded.params["made_by"] == "random"
    with pytest.raises(ValueError, match="made for 30 structures"):
        load_split(path, n=31)


def test_load_split_from_other_index_files(tmp_path):
    path = tmp_path / "schnetpack_split.npz"
    np.savez(path, train_idx=[0, 1, 2], val_idx=[3], test_idx=[4, 5])
    split = load_split(path, n=6)
    assert split.sizes == {"train": 3, "val": 1, "test": 2} and split.n is None
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": [0]}))
    with pytest.raises(ValueError, match="no training indices.*found \\['training'\\]"):
        load_split(bad)
    with pytest.raises(ValueError, match="out of range"):
        load_split(path, n=5)


def test_make_split_from_specs(tmp_path):
    assert make_split({"method": "random", "sizes": [5, 2, 3], "seed": 0}, n=10).sizes["test"] == 3
    path = random_split(10, sizes=[5, 2, 3]).save(tmp_path / "s.npz")
    assert make_split({"method": "file", "path": str(path)}, n=10).sizes["val"] == 2
    with pytest.raises(ValueError, match="unknown split method 'kfold'"):
        make_split({"method": "kfold"}, n=10)
    with pytest.raises(ValueError, match="bad split spec.*sized"):
        make_split({"method": "random", "sized": [5, 2, 3]}, n=10)
