"""The training domain of a model, and a warning when it is asked about structures outside it.

A model answers any geometry with a number, also one far from everything it was trained on (an
O–H bond squeezed to 0.6 Å, a 62-atom alkane for an ethanol force field), and that number is
extrapolated, often wildly. :class:`TrainingDomain` records two plain measures of the training
set and checks structures against them where users hand structures over (``predict``, the ASE
calculator, ``energy``, ``generate``), never in training forward passes, which build
off-distribution geometries on purpose (DeNS, diffusion) and must not pay for the check:

- per pair of elements, the shortest distance between two such atoms within the model's range
  (the backbone's cutoff, or the range of a Hamiltonian's atom-pair heads);
- the largest number of atoms of a structure.

A structure outside them gets an :class:`ExtrapolationWarning` naming the structure, the atom
pair and its distance against the training data's, or its size against the largest trained.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import torch

from zoo.data import keys
from zoo.data._batch import batch_index, n_structures
from zoo.data.elements import SYMBOLS, ElementIndex
from zoo.data.neighbors import edge_vectors, radius_graph

#: A pair of atoms closer than this fraction of the shortest distance between their elements in
#: the training data is outside the domain (slack: validation and MD frames of the training
#: distribution dip slightly below the training set's own minimum).
CLOSE_FRACTION = 0.9
#: A structure with more atoms than this multiple of the largest training structure is outside
#: the domain (sums over atoms and all-pair heads have never seen its size).
SIZE_FACTOR = 1.5
#: Structures a warning describes; the others are counted.
NAMED_STRUCTURES = 3


class ExtrapolationWarning(UserWarning):
    """A model was asked about a structure outside its training domain (see :class:`TrainingDomain`)."""


class TrainingDomain(torch.nn.Module):
    """The shortest distance per element pair and the largest structure of a model's training set.

    Both are buffers, so a saved model carries them. :meth:`fit` records them (the task does, at
    the start of a fresh fit); :meth:`check` warns about structures outside them. An unfitted
    domain (zeros) checks nothing.

    ``shortest_distance[a, b]`` is in Å for the model's element indices ``a``, ``b``: 0 where
    nothing is known (unfitted), ``inf`` where the training data have no such pair within
    ``cutoff`` (any such pair is then outside the domain). ``max_atoms`` is 0 when unknown.

    Checkpoints written before models recorded their domain, the published ones among them,
    have none of its tensors: they load, also strictly, as an unfitted domain (the force fields
    among them recorded one shortest distance, which :class:`~zoo.models.ForceFieldModel` keeps
    for every pair). A state dict with only some of the domain's tensors still fails a strict
    load, as does any other missing tensor.

    Args:
        elements: the elements of the model (symbols or atomic numbers).
        cutoff: range (Å) of the pairs that count: the backbone's cutoff, or the range of a
            Hamiltonian's atom-pair heads (all pairs of a small molecule).
    """

    #: The tensors of the state dict.
    STATE = ("shortest_distance", "max_atoms")

    def __init__(self, elements: Sequence[str | int], cutoff: float):
        super().__init__()
        if not cutoff > 0:
            raise ValueError(f"cutoff must be positive (Å), got {cutoff}")
        self.element_index = ElementIndex(elements)
        self.cutoff = float(cutoff)
        n = len(self.element_index)
        self.register_buffer("shortest_distance", torch.zeros(n, n))
        self.register_buffer("max_atoms", torch.zeros((), dtype=torch.long))
        self.register_load_state_dict_pre_hook(_load_absent_as_unfitted)

    @torch.no_grad()
    def fit(self, structures: Iterable) -> None:
        """Widen the domain to cover ``structures`` (:class:`~zoo.data.AtomicData`, e.g. a training set).

        An unfitted domain becomes that of ``structures``; a fitted one (a pretrained model being
        fine-tuned) keeps what it had seen too.
        """
        n = len(self.element_index)
        shortest = torch.full((n * n,), math.inf, dtype=torch.float64)
        largest = 0
        for data in structures:
            largest = max(largest, int(data[keys.ATOMIC_NUMBERS].numel()))
            pair_type, _, lengths = self._pairs(data)
            shortest.scatter_reduce_(0, pair_type.cpu(), lengths.cpu().double(), "amin")
        if not largest:
            return
        shortest = shortest.reshape(n, n).to(self.shortest_distance)
        known = self.shortest_distance > 0
        self.shortest_distance.copy_(torch.where(known, torch.minimum(self.shortest_distance, shortest), shortest))
        self.max_atoms.fill_(max(largest, int(self.max_atoms)))

    @torch.no_grad()
    def outliers(self, batch, first: int = 0, geometry: bool = True) -> list[str]:
        """One line for each structure of ``batch`` outside the domain, numbered from ``first``.

        A line names the structure's size when it exceeds ``SIZE_FACTOR`` times the largest
        training structure, and, with ``geometry``, its atom pair most compressed relative to the
        training data when that pair is closer than ``CLOSE_FRACTION`` times the training
        data's shortest distance for its elements (or of elements never that close in training).
        ``geometry=False`` checks sizes only: for a molecule given as a graph, whose positions
        are no input.
        """
        z = batch[keys.ATOMIC_NUMBERS]
        structure = batch_index(batch)
        n_atoms = torch.bincount(structure, minlength=n_structures(batch))
        start = torch.cumsum(n_atoms, 0) - n_atoms
        findings: dict[int, list[str]] = {}

        largest = int(self.max_atoms)
        if largest:
            for s in torch.nonzero(n_atoms > SIZE_FACTOR * largest).flatten().tolist():
                findings.setdefault(s, []).append(f"{int(n_atoms[s])} atoms, more than {SIZE_FACTOR} × the largest "
                                                  f"training structure ({largest} atoms)")

        if geometry and bool((self.shortest_distance > 0).any()):
            pair_type, edge_index, lengths = self._pairs(batch)
            reference = self.shortest_distance.reshape(-1)[pair_type].to(lengths)
            ratio = lengths / reference  # 0 for a pair of elements never this close in training
            outside = torch.nonzero((reference > 0) & (ratio < CLOSE_FRACTION)).flatten()
            described = set()
            for edge in outside[torch.argsort(ratio[outside], stable=True)].tolist():
                i, j = sorted(edge_index[:, edge].tolist())
                s = int(structure[i])
                if s in described:  # one pair per structure: its most compressed
                    continue
                described.add(s)
                a, b = (SYMBOLS[int(z[k])] for k in (i, j))
                local = i - int(start[s])
                atoms = (f"atom {local} ({a}) and its periodic image are" if i == j
                         else f"atoms {local} ({a}) and {j - int(start[s])} ({b}) are")
                seen = float(reference[edge])
                training = (f"the training data have no {a}–{b} pair within {self.cutoff:g} Å" if math.isinf(seen)
                            else f"under {CLOSE_FRACTION} × the shortest {a}–{b} distance in the training data "
                                 f"({seen:.3f} Å)")
                findings.setdefault(s, []).insert(0, f"{atoms} {float(lengths[edge]):.3f} Å apart, {training}")
        return [f"structure {first + s}: {'; '.join(lines)}" for s, lines in sorted(findings.items())]

    def check(self, batch, geometry: bool = True, stacklevel: int = 2) -> None:
        """Warn once (:class:`ExtrapolationWarning`) about the structures of ``batch`` outside the
        domain; see :meth:`outliers`. ``stacklevel`` as :func:`warnings.warn`'s, from the caller."""
        self.warn(self.outliers(batch, geometry=geometry), stacklevel + 1)

    @staticmethod
    def warn(outliers: Sequence[str], stacklevel: int = 2) -> None:
        """One :class:`ExtrapolationWarning` for lines of :meth:`outliers` (of several batches), if any."""
        if not outliers:
            return
        named = "; ".join(outliers[:NAMED_STRUCTURES])
        more = len(outliers) - NAMED_STRUCTURES
        warnings.warn(
            f"{len(outliers)} structure{'s' if len(outliers) > 1 else ''} outside the model's training domain, "
            f"where its predictions are extrapolated: {named}{f'; and {more} more' if more > 0 else ''}. Check "
            "the structures (units, a broken geometry), or use a model trained on such structures",
            ExtrapolationWarning, stacklevel=stacklevel + 1,
        )

    @staticmethod
    def of(model: torch.nn.Module) -> TrainingDomain | None:
        """The domain of ``model`` (the first among its submodules), or None for a model without one."""
        return next((module for module in model.modules() if isinstance(module, TrainingDomain)), None)

    def _pairs(self, data) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pairs within ``cutoff`` of a structure or batch: element-pair index ``a * n + b``,
        ``edge_index`` and length (Å) of each."""
        cell = data[keys.CELL] if keys.CELL in data else None
        pbc = data[keys.PBC] if keys.PBC in data else None
        edge_index, shift = radius_graph(data[keys.POSITIONS], self.cutoff, batch_index(data), cell, pbc)
        lengths = edge_vectors(data, edge_index, shift).detach().norm(dim=-1)
        species = self.element_index(data[keys.ATOMIC_NUMBERS])
        return species[edge_index[0]] * len(self.element_index) + species[edge_index[1]], edge_index, lengths

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff:g} Å, elements={self.element_index.symbols}"


def _load_absent_as_unfitted(module: TrainingDomain, state_dict, prefix, *args) -> None:
    # a state dict from before models recorded their domain: keep strict loading working for it
    # by loading an unfitted domain (zeros), which checks nothing
    if not any(prefix + name in state_dict for name in module.STATE):
        for name in module.STATE:
            state_dict[prefix + name] = torch.zeros_like(getattr(module, name))
