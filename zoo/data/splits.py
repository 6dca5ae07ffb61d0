"""Train/validation/test splits: random, by group (molecule), out-of-distribution by size, or from index files.

Each way returns a :class:`Split` (:mod:`zoo.data._split`): three integer index arrays and how
they were made, saved next to each run (``split.npz``) so that the run can be reproduced or
evaluated on the same test set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from zoo.data._split import SETS, Split, load_split

__all__ = ["SETS", "Split", "group_labels", "group_split", "load_split", "make_split", "random_split", "size_split"]


def random_split(
    n: int,
    sizes: Sequence[int | None] | None = None,
    fractions: Sequence[float] | None = None,
    seed: int = 0,
) -> Split:
    """A random split of ``n`` structures, deterministic for a seed.

    Args:
        n: number of structures.
        sizes: ``[n_train, n_val, n_test]`` (or ``[n_train, n_val]``); one entry may be ``None``
            or ``-1`` for "all the rest".
        fractions: the same as fractions of ``n``; if they sum to 1, the structures lost to
            rounding go to the training set.
        seed: seed of :func:`numpy.random.default_rng`.

    Raises:
        ValueError: both or neither of ``sizes``/``fractions``, more structures requested than
            exist, or a set requested non-empty that would be empty.

    Example:
        >>> random_split(10, sizes=[6, 2, None], seed=0).sizes
        {'train': 6, 'val': 2, 'test': 2}
    """
    n = int(n)
    counts = _set_counts(n, sizes, fractions, "random_split", "structures")
    return Split(*_draw(n, counts, seed), method="random", params=_request(sizes, fractions, seed), n=n)


def _set_counts(n: int, sizes, fractions, caller: str, unit: str) -> list[int]:
    """Checked numbers of ``unit`` (structures, groups) in the train, validation and test sets."""
    if (sizes is None) == (fractions is None):
        raise ValueError(f"{caller} needs either sizes or fractions (not both)")
    if n <= 0:
        raise ValueError(f"cannot split a dataset of {n} {unit}")
    requested = list(sizes if sizes is not None else fractions)
    if len(requested) not in (2, 3):
        raise ValueError(f"give 2 or 3 entries (train, val[, test]), got {requested}")
    requested += [0] * (3 - len(requested))
    if sizes is not None:
        counts, wanted = _counts_from_sizes(n, requested, unit)
    else:
        counts, wanted = _counts_from_fractions(n, requested)
    for name, count, want in zip(SETS, counts, wanted):
        if want and count == 0:
            raise ValueError(f"this split leaves the {name} set empty ({name}: {want} of {n} {unit}): give more "
                             f"{unit}, or a split that keeps at least one in each set (data.init_args.split)")
    if counts[0] == 0:
        raise ValueError(f"this split leaves the train set empty; request at least one training {unit[:-1]}")
    return counts


def _draw(n: int, counts: list[int], seed: int) -> list[np.ndarray]:
    """The sorted members of the train, validation and test sets, ``counts`` of ``n`` items drawn
    by one seeded shuffle."""
    order = np.random.default_rng(seed).permutation(n)
    bounds = np.cumsum([0, *counts])
    return [np.sort(order[bounds[i]:bounds[i + 1]]) for i in range(3)]


def _request(sizes, fractions, seed: int) -> dict:
    """The ``params`` of a drawn split: its seed and the sizes or fractions asked for."""
    return {"seed": int(seed), **({"sizes": list(sizes)} if sizes is not None else {"fractions": list(fractions)})}


def _counts_from_sizes(n, requested, unit="structures"):
    rest = [i for i, s in enumerate(requested) if s is None or s == -1]
    if len(rest) > 1:
        raise ValueError(f"at most one size may be None/-1 ('the rest'), got {requested}")
    fixed = [0 if i in rest else int(s) for i, s in enumerate(requested)]
    if any(s < 0 for s in fixed) or any(s is not None and s != int(s) for s in requested):
        raise ValueError(f"sizes must be non-negative integers (or one None/-1), got {requested}")
    if sum(fixed) > n:
        raise ValueError(f"sizes {requested} ask for {sum(fixed)} {unit} but there are only {n}")
    if rest:
        fixed[rest[0]] = n - sum(fixed)
    wanted = ["the rest" if i in rest else s for i, s in enumerate(fixed)]
    return fixed, wanted


def _counts_from_fractions(n, requested):
    fractions = [float(f) for f in requested]
    if any(not 0 <= f <= 1 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise ValueError(f"fractions must lie in [0, 1] and sum to at most 1, got {requested}")
    counts = [math.floor(f * n + 1e-9) for f in fractions]
    if abs(sum(fractions) - 1) < 1e-9:
        counts[0] += n - sum(counts)
    return counts, [f"fraction {f}" if f > 0 else 0 for f in fractions]


def group_labels(structures: Sequence, key: str) -> list:
    """The value of ``key`` on every structure, as hashable group labels for :func:`group_split`.

    A per-structure tensor or array of one element (``qm9_id``) becomes a Python number, a longer
    one a tuple; strings (``smiles``) stay strings.

    Args:
        structures: :class:`~zoo.data.AtomicData` (``AtomicDataset.raw``) or mappings.
        key: the property naming each structure's group, e.g. ``"qm9_id"`` or ``"smiles"``.

    Raises:
        ValueError: ``key`` is missing on some structures (the message names how many, the first
            of them and the keys they do have).
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"a group split needs the key naming each structure's group (e.g. 'qm9_id'), got {key!r}")
    missing = [i for i, data in enumerate(structures) if key not in data]
    if missing:
        first = structures[missing[0]]
        available = sorted(first.keys() if callable(getattr(first, "keys", None)) else first)
        raise ValueError(f"the group split's key {key!r} is missing on {len(missing)} of {len(structures)} "
                         f"structure(s), e.g. structure(s) {missing[:5]}; structure {missing[0]} has {available}")
    return [_hashable(structures[i][key], key, i) for i in range(len(structures))]


def _hashable(value, key, index):
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        flat = value.reshape(-1).tolist()
        return flat[0] if len(flat) == 1 else tuple(flat)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    try:
        hash(value)
    except TypeError:
        raise ValueError(f"structure {index}: the group key {key!r} holds {type(value).__name__} {value!r}, "
                         "which cannot label a group; use a number or a string") from None
    return value


def group_split(
    groups: Sequence,
    sizes: Sequence[int | None] | None = None,
    fractions: Sequence[float] | None = None,
    seed: int = 0,
    key: str | None = None,
) -> Split:
    """A random split of groups (molecules), keeping every structure of a group in one set.

    Several structures of one molecule (an optimised structure, perturbed copies, ...) in
    different sets would leak the molecule from training into validation or test; this split
    draws whole groups. ``sizes`` and ``fractions`` count groups, not structures, so the
    number of structures per set varies with the groups drawn.

    The groups are ordered by label before the seeded shuffle, so the split depends on the set
    of groups, the sizes and the seed, not on the order of the structures in the file.

    Args:
        groups: one label per structure (a number or a string, e.g. from :func:`group_labels`);
            structures with equal labels form a group.
        sizes: ``[n_train, n_val, n_test]`` groups (or ``[n_train, n_val]``); one entry may be
            ``None`` or ``-1`` for "all the other groups".
        fractions: the same as fractions of the number of groups; if they sum to 1, the groups
            lost to rounding go to the training set.
        seed: seed of :func:`numpy.random.default_rng`.
        key: the property the labels came from, recorded in ``params``.

    Raises:
        ValueError: as :func:`random_split`, counted in groups; asking for more groups than
            exist names how many groups (and structures) there are.

    Example:
        >>> split = group_split([7, 7, 3, 3, 3, 5], sizes=[1, 1, 1], seed=0)
        >>> sorted(len(part) for part in (split.train, split.val, split.test))
        [1, 2, 3]
    """
    labels = list(groups)
    n = len(labels)
    if n == 0:
        raise ValueError("cannot split a dataset of 0 structures")
    try:
        unique = sorted(set(labels))
    except TypeError:  # labels of mixed types (numbers and strings): order them by type, then value
        unique = sorted(set(labels), key=lambda label: (type(label).__name__, str(label)))
    where = {label: i for i, label in enumerate(unique)}
    group_of = np.array([where[label] for label in labels], dtype=np.int64)
    n_groups = len(unique)
    try:
        counts = _set_counts(n_groups, sizes, fractions, "group_split", "groups")
    except ValueError as error:
        by = f" by {key!r}" if key else ""
        raise ValueError(f"{error} (the {n} structures form {n_groups} groups{by})") from None
    parts = [np.flatnonzero(np.isin(group_of, groups_of_set)) for groups_of_set in _draw(n_groups, counts, seed)]
    params = {**_request(sizes, fractions, seed), "n_groups": {name: int(count) for name, count in zip(SETS, counts)}}
    if key is not None:
        params["key"] = key
    return Split(*parts, method="group", params=params, n=n)


def size_split(
    n_atoms: Sequence[int],
    max_train_atoms: int,
    min_test_atoms: int,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Split:
    """An out-of-distribution split by molecule size (like QH9-stable-ood).

    Training and validation structures are drawn from those with at most ``max_train_atoms``
    atoms (validation: a random ``val_fraction`` of them); the test set is every structure with
    at least ``min_test_atoms`` atoms. Structures in between are in no set; their number is
    recorded in ``params["unused"]``.

    Args:
        n_atoms: number of atoms of each structure.
        max_train_atoms: largest size in training/validation.
        min_test_atoms: smallest size in the test set; must exceed ``max_train_atoms``.
        val_fraction: fraction of the small structures held out for validation.
        seed: seed of :func:`numpy.random.default_rng`.
    """
    n_atoms = np.asarray(n_atoms, dtype=np.int64).reshape(-1)
    if n_atoms.size == 0:
        raise ValueError("cannot split a dataset of 0 structures")
    if min_test_atoms <= max_train_atoms:
        raise ValueError(f"min_test_atoms ({min_test_atoms}) must exceed max_train_atoms ({max_train_atoms}) "
                         "so that no size is both trained and tested on")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    span = f"sizes in the dataset range from {n_atoms.min()} to {n_atoms.max()} atoms"
    small = np.flatnonzero(n_atoms <= max_train_atoms)
    test = np.flatnonzero(n_atoms >= min_test_atoms)
    if small.size == 0:
        raise ValueError(f"this split leaves the train set empty: no structure has <= {max_train_atoms} atoms; {span}")
    if test.size == 0:
        raise ValueError(f"this split leaves the test set empty: no structure has >= {min_test_atoms} atoms; {span}")
    n_val = int(round(val_fraction * small.size))
    if val_fraction > 0 and n_val == 0:
        raise ValueError(f"this split leaves the val set empty: {val_fraction} of {small.size} small structures")
    if n_val >= small.size:
        raise ValueError(f"this split leaves the train set empty: val_fraction {val_fraction} of {small.size}")
    shuffled = np.random.default_rng(seed).permutation(small)
    params = {"max_train_atoms": int(max_train_atoms), "min_test_atoms": int(min_test_atoms),
              "val_fraction": float(val_fraction), "seed": int(seed),
              "unused": int(n_atoms.size - small.size - test.size)}
    return Split(np.sort(shuffled[n_val:]), np.sort(shuffled[:n_val]), test, method="size",
                 params=params, n=n_atoms.size)


def make_split(
    spec: dict,
    n: int | None = None,
    n_atoms: Sequence[int] | None = None,
    groups: Sequence | None = None,
) -> Split:
    """A split from a YAML-friendly spec, as :class:`~zoo.data.AtomicDataModule` takes it.

    ``{"method": "random", "sizes": [800, 100, 100], "seed": 0}`` (or ``fractions``),
    ``{"method": "group", "key": "qm9_id", "sizes": [80, 10, 10], "seed": 0}`` (sizes or
    fractions count groups; the caller reads each structure's ``key`` and passes ``groups``,
    see :func:`group_labels`),
    ``{"method": "size", "max_train_atoms": 20, "min_test_atoms": 23, "val_fraction": 0.1, "seed": 0}``,
    ``{"method": "file", "path": "split.npz"}``.

    Args:
        spec: the method and its arguments.
        n: number of structures (random and file splits).
        n_atoms: number of atoms of each structure (size split).
        groups: group label of each structure (group split).
    """
    spec = dict(spec)
    method = spec.pop("method", "random")
    try:
        if method == "random":
            if n is None:
                raise ValueError("a random split needs the number of structures")
            return random_split(n, **spec)
        if method == "group":
            if not spec.get("key"):
                raise ValueError(f"a group split needs a key naming each structure's group, e.g. "
                                 f"{{method: group, key: qm9_id, fractions: [0.9, 0.1], seed: 0}}; got {spec}")
            if groups is None:
                raise ValueError(f"a group split needs the group label of each structure (the values of "
                                 f"{spec['key']!r}), see zoo.data.splits.group_labels")
            if n is not None and len(groups) != n:
                raise ValueError(f"{len(groups)} group labels for {n} structures")
            return group_split(groups, **spec)
        if method == "size":
            if n_atoms is None:
                raise ValueError("a size split needs the number of atoms of each structure")
            return size_split(n_atoms, **spec)
        if method == "file":
            return load_split(spec.pop("path"), n=n, **spec)
    except TypeError as error:  # an unexpected or missing argument in the spec
        raise ValueError(f"bad split spec {dict(spec, method=method)}: {error}") from error
    except KeyError as error:
        raise ValueError(f"split spec {dict(spec, method=method)} lacks {error}") from error
    raise ValueError(f"unknown split method {method!r}; choose 'random', 'group', 'size' or 'file'")
