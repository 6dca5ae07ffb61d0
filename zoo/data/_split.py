"""A train/validation/test split: three disjoint integer index arrays, how they were made, and its files.

The ways of making one are :mod:`zoo.data.splits`; a :class:`Split` is saved next to each run
(``split.npz``) and read back, or read from the index files of other codes, by :func:`load_split`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SETS = ("train", "val", "test")
#: Index-array names accepted by :func:`load_split`, per set, in order of preference
#: (zoo's own, SchNetPack's ``split.npz``, and the ``idx_*`` spelling of some benchmark files).
_FILE_KEYS = {
    "train": ("train", "train_idx", "idx_train"),
    "val": ("val", "val_idx", "idx_val", "valid", "validation"),
    "test": ("test", "test_idx", "idx_test"),
}


@dataclass
class Split:
    """Indices of the training, validation and test structures, and how they were chosen.

    Args:
        train, val, test: 0-based integer positions in the dataset; disjoint, no repeats.
        method: how the split was made (``"random"``, ``"group"``, ``"size"``, ``"file"``, ...).
        params: the arguments that made it (seed, sizes, ...), saved with it.
        n: number of structures of the dataset it was made for, when known; checked on use.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str = "given"
    params: dict = field(default_factory=dict)
    n: int | None = None

    def __post_init__(self):
        for name in SETS:
            values = np.asarray(getattr(self, name))
            if values.size and not np.issubdtype(values.dtype, np.integer):
                raise ValueError(f"{name} indices must be integers, got dtype {values.dtype}")
            setattr(self, name, values.astype(np.int64).reshape(-1))
        self.n = None if self.n is None or int(self.n) < 0 else int(self.n)
        for name in SETS:
            values = getattr(self, name)
            if values.size and values.min() < 0:
                raise ValueError(f"{name} indices must be >= 0, found {values.min()}")
            repeated = values.size - np.unique(values).size
            if repeated:
                raise ValueError(f"{name} indices repeat {repeated} structure(s)")
        for i, a in enumerate(SETS):
            for b in SETS[i + 1:]:
                shared = np.intersect1d(getattr(self, a), getattr(self, b))
                if shared.size:
                    raise ValueError(f"the {a} and {b} sets overlap in {shared.size} structure(s), "
                                     f"e.g. {shared[:5].tolist()}")
        if self.n is not None:
            self.check(self.n)

    def check(self, n: int) -> "Split":
        """Raise ``ValueError`` unless every index is valid for a dataset of ``n`` structures."""
        if self.n is not None and self.n != n:
            raise ValueError(f"this split was made for {self.n} structures but the dataset has {n}; "
                             "it belongs to another dataset (or other reader arguments)")
        for name in SETS:
            values = getattr(self, name)
            if values.size and values.max() >= n:
                raise ValueError(f"{name} indices out of range: max {values.max()} for a dataset of {n} structures")
        return self

    @property
    def sizes(self) -> dict[str, int]:
        return {name: int(getattr(self, name).size) for name in SETS}

    def __repr__(self) -> str:
        return f"Split({self.method}, {self.sizes}, n={self.n}, params={self.params})"

    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``.npz`` (arrays plus a JSON ``info`` entry) or ``.json``, atomically."""
        path = Path(os.fspath(path))
        info = {"method": self.method, "params": self.params, "n": -1 if self.n is None else self.n}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix == ".npz":
            with open(tmp, "wb") as handle:  # a file object, so that numpy adds no second suffix
                np.savez(handle, train=self.train, val=self.val, test=self.test,
                         info=np.array(json.dumps(info, default=_jsonable)))
        elif path.suffix == ".json":
            payload = {**info, **{name: getattr(self, name).tolist() for name in SETS}}
            tmp.write_text(json.dumps(payload, default=_jsonable))
        else:
            raise ValueError(f"save a split as .npz or .json, not {path.suffix!r} ({path})")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Split":
        """Read a split saved by :meth:`save` (or any file :func:`load_split` reads)."""
        return load_split(path)


def load_split(path: str | os.PathLike, n: int | None = None) -> Split:
    """Read a split from index files: ``.npz`` or ``.json`` with ``train``/``val``/``test`` arrays.

    ``.npz`` files may also name them ``train_idx``/``val_idx``/``test_idx`` (SchNetPack) or
    ``idx_train``/... ; a missing test (or validation) array means an empty set.

    Args:
        path: the file.
        n: number of structures of the dataset, to check the indices against.
    """
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no split file at {path}")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            found = {name: archive[name] for name in archive.files}
        info = json.loads(str(found.pop("info"))) if "info" in found else {}
    elif path.suffix == ".json":
        found = json.loads(path.read_text())
        if not isinstance(found, dict):
            raise ValueError(f"{path}: expected a JSON object with 'train', 'val' and 'test' lists")
        info = {k: found.pop(k) for k in ("method", "params", "n") if k in found}
    else:
        raise ValueError(f"cannot read a split from {path}: expected a .npz or .json file")
    arrays = {}
    for name, candidates in _FILE_KEYS.items():
        key = next((k for k in candidates if k in found), None)
        arrays[name] = np.asarray(found[key]) if key is not None else np.zeros(0, dtype=np.int64)
        if key is None and name == "train":
            raise ValueError(f"{path} has no training indices: expected one of {list(candidates)}; "
                             f"found {sorted(found)}")
    params = dict(info.get("params") or {})
    method = info.get("method", "file")
    if method != "file":
        params.setdefault("made_by", method)
    split = Split(**arrays, method="file", params={"path": str(path), **params}, n=info.get("n"))
    if n is not None:
        split.check(n)
    return split


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (np.ndarray, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {value!r} in a split file")
