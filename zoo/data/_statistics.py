"""The training set's statistics, one object that models, auxiliary losses and tasks read alike."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable


class Statistics(Mapping[str, Mapping[str, Any]]):
    """Statistics of the training set per key, as :class:`~zoo.data.AtomicDataModule` fits them.

    Each key maps to ``{"mean", "std", "per_atom", "count"}`` (:func:`~zoo.data.compute_statistics`)
    and, for energies whose per-element references were fitted, ``"reference_energies": {Z: value}``
    (with ``"level_reference_energies": {level: {Z: value}}`` for multi-fidelity data).
    Read them through :meth:`mean`, :meth:`std`, :meth:`per_atom` and :meth:`reference_energies`,
    which give the neutral value for what was not fitted.

    Example:
        >>> statistics = Statistics({"energy": {"mean": -0.5, "std": 0.1, "per_atom": True,
        ...                                     "reference_energies": {"1": -13.6}}})
        >>> statistics.mean("energy"), statistics.std("energy"), statistics.per_atom("energy")
        (-0.5, 0.1, True)
        >>> statistics.reference_energies("energy"), statistics.std("forces"), statistics.mean("forces")
        ({1: -13.6}, None, 0.0)
    """

    def __init__(self, per_key: Mapping[str, Mapping[str, Any]] | None = None):
        self._per_key = {key: dict(values) for key, values in (per_key or {}).items()}

    @classmethod
    def of(cls, statistics: Mapping[str, Mapping[str, Any]]) -> Statistics:
        """``statistics`` as a :class:`Statistics` (a nested dict, as older code and tests pass, is converted)."""
        return statistics if isinstance(statistics, Statistics) else cls(statistics)

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        return self._per_key[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._per_key)

    def __len__(self) -> int:
        return len(self._per_key)

    def mean(self, key: str) -> float:
        """The mean of ``key`` (per atom for per-atom statistics); 0 if not fitted."""
        return float(self._per_key.get(key, {}).get("mean", 0.0))

    def std(self, key: str) -> float | None:
        """The standard deviation of ``key``; ``None`` if not fitted."""
        std = self._per_key.get(key, {}).get("std")
        return None if std is None else float(std)

    def per_atom(self, key: str) -> bool:
        """Whether the mean and std of ``key`` are per atom (extensive energies)."""
        return bool(self._per_key.get(key, {}).get("per_atom", False))

    def reference_energies(self, key: str, level: str | None = None) -> dict[int, float]:
        """``{Z: value}``, the per-element references removed from ``key``; empty if none.

        With ``level``, those of that level of theory of multi-fidelity data (empty if the data
        have no such level); without, those of the primary level."""
        fitted = self._per_key.get(key, {})
        references = (fitted.get("reference_energies", {}) if level is None
                      else fitted.get("level_reference_energies", {}).get(level, {}))
        return {int(z): float(value) for z, value in references.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._per_key})"


@runtime_checkable
class UsesStatistics(Protocol):
    """What a task hands the training set's :class:`Statistics` to at the start of a fit: models
    (shift, scale, reference energies) and auxiliary losses (DeNS's force scale)."""

    def set_statistics(self, statistics: Statistics) -> None: ...


@runtime_checkable
class StatisticsSource(Protocol):
    """What a task reads the training set's statistics from: a data module such as
    :class:`~zoo.data.AtomicDataModule` (empty until its ``setup`` has fitted them)."""

    statistics: Statistics
