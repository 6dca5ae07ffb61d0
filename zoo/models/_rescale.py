"""Rescale modules: the training set's statistics as buffers that turn a network's standardised outputs
into physical values (MACE's ``ScaleShiftBlock`` and atomic energies, NequIP's ``RescaleOutput`` and
per-species shifts), and :class:`RescaledModel`, the base of every model that predicts targets through them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from zoo.data import Statistics
from zoo.data.elements import MAX_ATOMIC_NUMBER
from zoo.models._upgrade import upgrade_state_dict


class ScaleShift(torch.nn.Module):
    """``scale * x + shift`` with one scale and one shift per target (the last dimension of ``x``).

    Scale 1 and shift 0 until :meth:`set_statistics` sets them to each target's standard deviation
    and mean on the training set.

    Example:
        >>> rescale = ScaleShift(["U0", "gap"])
        >>> rescale.set_statistics(Statistics({"U0": {"mean": -4.0, "std": 0.5}}))
        >>> rescale(torch.tensor([[2.0, 3.0]])).tolist()
        [[-3.0, 3.0]]
    """

    def __init__(self, targets: Sequence[str]):
        super().__init__()
        self.targets = list(targets)
        self.register_buffer("shift", torch.zeros(len(self.targets)))
        self.register_buffer("scale", torch.ones(len(self.targets)))

    def set_statistics(self, statistics: Statistics) -> None:
        for i, target in enumerate(self.targets):
            std = statistics.std(target)
            self.shift[i] = statistics.mean(target)
            self.scale[i] = 1.0 if std is None else std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift

    def extra_repr(self) -> str:
        return f"targets={self.targets}"


class ReferenceEnergies(torch.nn.Module):
    """Per-element reference values of each target, ``atomref[target, Z]``: the per-element energies
    that the data module fitted and removed before fitting the other statistics, for a model to add
    back atom by atom. Zero until :meth:`set_statistics`.

    Example:
        >>> references = ReferenceEnergies(["energy"])
        >>> references.set_statistics(Statistics({"energy": {"reference_energies": {1: -13.5, 8: -2040.0}}}))
        >>> references(torch.tensor([8, 1, 1])).sum(0).tolist()
        [-2067.0]
    """

    def __init__(self, targets: Sequence[str]):
        super().__init__()
        self.targets = list(targets)
        self.register_buffer("atomref", torch.zeros(len(self.targets), MAX_ATOMIC_NUMBER + 1))

    def set_statistics(self, statistics: Statistics) -> None:
        for i, target in enumerate(self.targets):
            self.atomref[i].zero_()
            for z, value in statistics.reference_energies(target).items():
                self.atomref[i, z] = value

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Atomic numbers [n_atoms] -> each atom's reference value of each target [n_atoms, n_targets]."""
        return self.atomref[:, z].T

    def extra_repr(self) -> str:
        return f"targets={self.targets}"


class RescaledModel(torch.nn.Module):
    """Base of the models whose network predicts standardised ``targets``: owns their
    :class:`ScaleShift` (:attr:`rescale`) and :class:`ReferenceEnergies` (:attr:`reference_energies`)
    and sets both from the training set's statistics; subclasses decide where in their readout to
    apply them. Loading a state dict of an older zoo goes through
    :func:`~zoo.models._upgrade.upgrade_state_dict`.

    Args:
        targets: canonical keys of the predicted quantities.
    """

    def __init__(self, targets: Sequence[str]):
        super().__init__()
        self.targets = list(targets)
        self.rescale = ScaleShift(self.targets)
        self.reference_energies = ReferenceEnergies(self.targets)
        self.register_load_state_dict_pre_hook(upgrade_state_dict)

    def target_scale(self, target: str) -> tuple[torch.Tensor, bool]:
        """The standard deviation the network's output for ``target`` is scaled by, and whether it
        is a per-atom one (read by :class:`~zoo.callbacks.HessianSpectrum` to standardise losses).

        Raises:
            KeyError: the model does not predict ``target``.
        """
        if target not in self.targets:
            raise KeyError(f"{type(self).__name__} predicts {self.targets}, not {target!r}")
        return self.rescale.scale[self.targets.index(target)], False

    def set_statistics(self, statistics: Statistics | Mapping[str, Mapping]) -> None:
        """Shift, scale and reference energies from the training set's :class:`~zoo.data.Statistics`
        (a nested dict ``{target: {"mean", "std", "reference_energies"}}`` is converted); a target
        without statistics keeps shift 0, scale 1 and no references."""
        statistics = Statistics.of(statistics)
        self.rescale.set_statistics(statistics)
        self.reference_energies.set_statistics(statistics)
