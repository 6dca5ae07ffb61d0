"""An in-memory dataset of :class:`~zoo.data.AtomicData`, the type every reader returns."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data._atomic_data import AtomicData


class AtomicDataset(Dataset):
    """A list of :class:`AtomicData` held in memory, with an optional transform and metadata.

    The transform runs on a shallow copy of each stored structure at access time, so that
    transforms adding keys (a neighbour list, say) never grow or change the stored data.
    Transforms must therefore assign new tensors rather than modify tensors in place.

    Args:
        data: the structures.
        transform: called on each structure when it is accessed.
        metadata: where the data came from and how it was made (reader, path, units, level of
            theory, ...); carried over by :meth:`subset`.

    Example:
        >>> from zoo.data import AtomicData, AtomicDataset
        >>> ds = AtomicDataset([AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]])],
        ...                    metadata={"source": "by hand"})
        >>> len(ds), ds.metadata["source"]
        (1, 'by hand')
    """

    def __init__(
        self,
        data: Iterable[AtomicData] = (),
        transform: Callable[[AtomicData], AtomicData] | None = None,
        metadata: dict | None = None,
    ):
        self._data = list(data)
        self.transform = transform
        self.metadata = dict(metadata or {})

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: int) -> AtomicData:
        data = self._data[index]
        if self.transform is None:
            return data
        # a shallow copy: new key->tensor mapping, shared tensors
        return self.transform(copy.copy(data))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        source = self.metadata.get("source")
        return f"{type(self).__name__}({len(self)} structures" + (f", source={source!r})" if source else ")")

    @property
    def raw(self) -> Sequence[AtomicData]:
        """The stored structures, without the transform."""
        return self._data

    def subset(self, indices, transform: Callable | None | str = "same") -> "AtomicDataset":
        """The structures at ``indices`` (sharing storage), with this dataset's metadata.

        Args:
            indices: integer positions.
            transform: the subset's transform; by default this dataset's.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = len(self)
        if indices.size and (indices.min() < -n or indices.max() >= n):
            raise IndexError(f"indices out of range for a dataset of {n} structures: "
                             f"min {indices.min()}, max {indices.max()}")
        return AtomicDataset(
            [self._data[int(i)] for i in indices],
            transform=self.transform if transform == "same" else transform,
            metadata=self.metadata,
        )

    def keys(self) -> list[str]:
        """The property keys of the stored structures (sorted union)."""
        found: set[str] = set()
        for data in self._data:
            found.update(data.keys())
        return sorted(found)

    def require_nonempty(self, what: str = "") -> "AtomicDataset":
        """Raise ``ValueError("dataset is empty: ...")`` if there are no structures; else return self."""
        if len(self) == 0:
            source = self.metadata.get("source")
            where = what or (f"read from {source}" if source else "no structures were given")
            raise ValueError(f"dataset is empty: {where}")
        return self

    def n_atoms(self) -> np.ndarray:
        """Number of atoms of each structure, [n_structures]."""
        return np.array([int(d.z.numel()) for d in self._data], dtype=np.int64)


def check_consistent_keys(data: Sequence[AtomicData], source: str) -> None:
    """Every structure must carry the same keys: a property missing on some is an error.

    Batching structures with different keys fails later with an obscure message, and dropping
    the property would silently lose data; naming the first offender here is kinder.
    """
    if not data:
        return
    reference = set(data[0].keys())
    for i, item in enumerate(data):
        found = set(item.keys())
        if found != reference:
            missing, extra = sorted(reference - found), sorted(found - reference)
            raise ValueError(
                f"{source}: structure {i} has different properties from structure 0 "
                f"(missing {missing}, extra {extra}); every structure must carry the same properties"
            )


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    """A torch floating dtype from ``None`` (torch's default), a dtype, or a name like ``"float64"``."""
    if dtype is None:
        return torch.get_default_dtype()
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    else:
        resolved = getattr(torch, str(dtype).replace("torch.", ""), None)
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype such as 'float32' or 'float64', got {dtype!r}")
    return resolved
