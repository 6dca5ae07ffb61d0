import json

import numpy as np
import pytest

from zoo.data.splits import (
    Split,
    group_labels,
    group_split,
    load_split,
    make_split,
    random_split,
    size_split,
)


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
    ({"fractions": [0.995, 0.005, 0.0]}, "leaves the val set empty.*give more structures.*data.init_args.split"),
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


# 12 molecules with 1 to 4 structures each, in no particular order (as in a file of minima, then perturbed copies)
GROUPS = [101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112,
          101, 103, 105, 107, 109, 111, 101, 105, 109, 101, 112, 102]


def _groups_per_set(split, groups):
    groups = np.asarray(groups)
    return {name: set(groups[getattr(split, name)].tolist()) for name in ("train", "val", "test")}


@pytest.mark.parametrize("kwargs", [{"sizes": [8, 2, 2]}, {"sizes": [6, 3, None]}, {"fractions": [0.7, 0.2, 0.1]},
                                    {"fractions": [0.8, 0.2]}])
def test_group_split_keeps_every_group_in_one_set(kwargs):
    split = group_split(GROUPS, **kwargs, seed=1, key="qm9_id")
    per_set = _groups_per_set(split, GROUPS)
    assert not per_set["train"] & per_set["val"] and not per_set["train"] & per_set["test"]
    assert not per_set["val"] & per_set["test"]
    for name, members in per_set.items():  # a set holds every structure of each of its groups
        assert set(getattr(split, name).tolist()) == {i for i, g in enumerate(GROUPS) if g in members}
    assert sum(len(m) for m in per_set.values()) == 12  # each of these specs asks for every group
    assert split.method == "group" and split.n == len(GROUPS) and split.params["key"] == "qm9_id"
    assert split.params["n_groups"] == {name: len(members) for name, members in per_set.items()}
    _disjoint_cover(split, len(GROUPS))


def test_group_split_sizes_count_groups_not_structures():
    split = group_split(GROUPS, sizes=[8, 2, 2], seed=0)
    assert {name: len(m) for name, m in _groups_per_set(split, GROUPS).items()} == {"train": 8, "val": 2, "test": 2}
    assert sum(split.sizes.values()) == len(GROUPS)  # every structure lands somewhere
    two = group_split(GROUPS, sizes=[9, 3], seed=0)
    assert two.sizes["test"] == 0 and len(_groups_per_set(two, GROUPS)["val"]) == 3
    # fractions of 12 groups: 8.4 -> 8 (+1 from rounding, as they sum to 1), 2.4 -> 2, 1.2 -> 1
    fractions = group_split(GROUPS, fractions=[0.7, 0.2, 0.1], seed=0)
    assert fractions.params["n_groups"] == {"train": 9, "val": 2, "test": 1}


def test_group_split_is_deterministic_and_independent_of_the_file_order():
    a = group_split(GROUPS, sizes=[8, 2, 2], seed=3)
    b = group_split(GROUPS, sizes=[8, 2, 2], seed=3)
    assert all(np.array_equal(getattr(a, s), getattr(b, s)) for s in ("train", "val", "test"))
    others = [group_split(GROUPS, sizes=[8, 2, 2], seed=seed) for seed in range(4, 8)]
    assert any(_groups_per_set(o, GROUPS) != _groups_per_set(a, GROUPS) for o in others)
    order = np.random.default_rng(0).permutation(len(GROUPS))
    shuffled = [GROUPS[i] for i in order]
    assert _groups_per_set(group_split(shuffled, sizes=[8, 2, 2], seed=3), shuffled) == _groups_per_set(a, GROUPS)
    # string labels (SMILES) work the same way
    smiles = [f"C{'C' * (g - 100)}O" for g in GROUPS]
    by_smiles = group_split(smiles, sizes=[8, 2, 2], seed=3)
    assert len(_groups_per_set(by_smiles, smiles)["val"]) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"sizes": [10, 2, 2]}, "ask for 14 groups but there are only 12.*the 24 structures form 12 groups by 'qm9_id'"),
    ({"sizes": [13, 0]}, "ask for 13 groups but there are only 12"),
    ({"fractions": [0.95, 0.05]}, "leaves the val set empty.*12 groups"),
    ({"sizes": [0, 6, 6]}, "leaves the train set empty"),
    ({}, "either sizes or fractions"),
])
def test_group_split_errors_count_groups(kwargs, message):
    with pytest.raises(ValueError, match=message):
        group_split(GROUPS, **kwargs, key="qm9_id")


def test_group_labels_from_structures_and_their_errors():
    import torch

    from zoo.data import AtomicData

    structures = [AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]], qm9_id=np.array([g])) for g in GROUPS[:4]]
    for data, text in zip(structures, ["CO", "CC", "CO", "CN"]):
        data.smiles = text
    labels = group_labels(structures, "qm9_id")
    assert labels == GROUPS[:4] and all(isinstance(g, int) for g in labels)
    assert group_labels(structures, "smiles") == ["CO", "CC", "CO", "CN"]
    assert group_labels([{"pair": torch.tensor([1, 2])}], "pair") == [(1, 2)]
    del structures[2].qm9_id
    with pytest.raises(ValueError, match=r"key 'qm9_id' is missing on 1 of 4 structure\(s\).*\[2\].*'smiles'"):
        group_labels(structures, "qm9_id")
    with pytest.raises(ValueError, match="needs the key"):
        group_labels(structures, None)
    with pytest.raises(ValueError, match="cannot label a group"):
        group_labels([{"g": {"a": 1}}], "g")


def test_group_split_through_make_split_and_a_saved_file(tmp_path):
    spec = {"method": "group", "key": "qm9_id", "sizes": [8, 2, 2], "seed": 5}
    split = make_split(spec, n=len(GROUPS), groups=GROUPS)
    assert _groups_per_set(split, GROUPS) == _groups_per_set(group_split(GROUPS, sizes=[8, 2, 2], seed=5), GROUPS)
    loaded = Split.load(split.save(tmp_path / "split.npz"))
    assert all(np.array_equal(getattr(split, s), getattr(loaded, s)) for s in ("train", "val", "test"))
    assert loaded.params["made_by"] == "group" and loaded.params["key"] == "qm9_id"
    assert loaded.params["n_groups"] == {"train": 8, "val": 2, "test": 2} and loaded.n == len(GROUPS)
    with pytest.raises(ValueError, match="needs a key"):
        make_split({"method": "group", "sizes": [8, 2, 2]}, n=len(GROUPS), groups=GROUPS)
    with pytest.raises(ValueError, match="group label of each structure"):
        make_split(spec, n=len(GROUPS))
    with pytest.raises(ValueError, match="bad split spec"):
        make_split({**spec, "size": 3}, n=len(GROUPS), groups=GROUPS)


def test_the_data_module_splits_by_molecule(tmp_path):
    from ase import Atoms
    from ase.io import write

    from zoo.data import AtomicDataModule

    frames = []
    for i, g in enumerate(GROUPS):
        atoms = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7 + 0.01 * i]])
        atoms.info.update(qm9_id=g, energy=-1.0 - 0.01 * i)
        frames.append(atoms)
    write(tmp_path / "frames.extxyz", frames)
    args = {"source": str(tmp_path / "frames.extxyz"), "split_dir": str(tmp_path / "run")}
    dm = AtomicDataModule(**args, reader_kwargs={"info_keys": ["qm9_id", "energy"]},
                          split={"method": "group", "key": "qm9_id", "sizes": [8, 2, 2], "seed": 0})
    dm.setup("fit")
    per_set = {name: {int(d.qm9_id) for d in getattr(dm, f"{name}_dataset")} for name in ("train", "val", "test")}
    assert {name: len(m) for name, m in per_set.items()} == {"train": 8, "val": 2, "test": 2}
    assert not per_set["train"] & per_set["val"] and not per_set["train"] & per_set["test"]
    assert load_split(dm.split_path).params["made_by"] == "group"
    again = AtomicDataModule(**args, reader_kwargs={"info_keys": ["qm9_id", "energy"]}, split_file=str(dm.split_path))
    again.setup("fit")
    assert np.array_equal(again.split.val, dm.split.val)
    no_key = AtomicDataModule(**args, reader_kwargs={"info_keys": ["energy"]},
                              split={"method": "group", "key": "qm9_id", "sizes": [8, 2, 2]})
    with pytest.raises(ValueError, match="key 'qm9_id' is missing on 24 of 24"):
        no_key.setup("fit")
