"""Message-passing neural network (Gilmer et al., ICML 2017): edge network, GRU update, set2set readout.

The "enn-s2s" variant of the paper, on the data layer's graphs: atoms start from a learned
embedding of their element; edges join every pair of atoms closer than the cutoff (a full graph
for QM9-size molecules at 5 Å), with the interatomic distance expanded in Gaussians as the edge
feature. Gilmer et al. also fed bond types and atom descriptors (donor/acceptor, aromaticity,
hybridisation, hydrogen count) from RDKit; this model uses the geometry alone, so it needs no
SMILES and takes any structure the data layer reads. The MLPs use SiLU where the paper used
ReLU: no units die (a dead readout makes a target's prediction constant), and the loss has the
continuous second derivatives that the curvature analysis (:mod:`zoo.analysis`) measures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import torch
from torch_geometric.nn.aggr import Set2Set
from torch_geometric.utils import scatter

from zoo.data import Statistics, batch_index, keys, n_structures
from zoo.data.elements import ElementIndex
from zoo.data.neighbors import edge_vectors, radius_graph
from zoo.models._compile import inference_core
from zoo.models._domain import TrainingDomain
from zoo.models._inference import Predictor, units_of
from zoo.models._rescale import RescaledModel
from zoo.nn import RadialEmbedding

AGGREGATIONS = ("sum", "mean")


class EdgeNetwork(torch.nn.Module):
    r"""Gilmer's edge-network message :math:`m_i = \operatorname{agg}_j A(e_{ij})\, h_j`.

    :math:`A(e_{ij})` is a ``channels x channels`` matrix computed by an MLP from the edge
    features. It is tied across message-passing steps, as in the paper, so :meth:`matrices` is
    evaluated once per forward pass and reused by every step (``torch_geometric.nn.NNConv``
    would recompute it at each step, which dominates the cost).

    Args:
        num_edge_features: size of the edge features.
        channels: size of the node states.
        hidden: width of the edge MLP.
        aggregation: ``"sum"`` (the paper) or ``"mean"`` over neighbours.
    """

    def __init__(self, num_edge_features: int, channels: int, hidden: int = 64, aggregation: str = "sum"):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.channels = channels
        self.aggregation = aggregation
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(num_edge_features, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, channels * channels)
        )
        self.bias = torch.nn.Parameter(torch.zeros(channels))

    def reset_parameters(self) -> None:
        for layer in self.mlp:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
        torch.nn.init.zeros_(self.bias)

    def matrices(self, edge_features: torch.Tensor) -> torch.Tensor:
        """[n_edges, num_edge_features] -> [n_edges, channels, channels]."""
        return self.mlp(edge_features).view(-1, self.channels, self.channels)

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
        neighbour, centre = edge_index
        messages = torch.bmm(matrices, h[neighbour].unsqueeze(-1)).squeeze(-1)
        return scatter(messages, centre, dim=0, dim_size=h.shape[0], reduce=self.aggregation) + self.bias


class MPNN(RescaledModel, Predictor):
    """Gilmer et al.'s MPNN (edge network, GRU, set2set) predicting per-structure scalar targets.

    Each target is ``rescale(y) * (n_atoms if per-atom else 1) + sum_atoms reference_energies(Z)``,
    where ``y`` is one output of the network and :attr:`rescale` its :class:`~zoo.models.ScaleShift`:
    for extensive energies, whose statistics are per atom, the network predicts the standardised
    energy per atom. Shift, scale and references start at 0, 1 and 0; :meth:`set_statistics` sets
    them from the training set (the task does this in
    ``setup``), so the network learns standardised targets whatever their units, and extensive
    energies (U0, U, H, G) get their per-element reference energies added back. All targets
    share the message passing and the readout; only the last linear layer is per target.
    ``domain`` (a :class:`~zoo.models.TrainingDomain` within the cutoff) records what the
    training set held; the task fits it. :meth:`predict` answers ASE structures with ``{target:
    float}`` (units: :attr:`prediction_units`), as :class:`~zoo.models.PropertyModel`'s does.

    Args:
        elements: the elements the model knows (symbols or atomic numbers).
        targets: canonical keys to predict (one model per target, or several jointly).
        channels: size of the node states.
        num_steps: message-passing steps T.
        set2set_steps: processing steps M of the set2set readout.
        cutoff: radius (Å) of the graph, when the batch carries no ``edge_index``.
        num_radial: number of Gaussians expanding the distance.
        edge_hidden: width of the edge network's MLP.
        aggregation: ``"sum"`` (the paper) or ``"mean"`` of messages.
    """

    #: Methods on tensors alone that :func:`~zoo.models.compile_for_inference` compiles.
    COMPILED_CORES: ClassVar[tuple[str, ...]] = ("network",)

    def __init__(
        self,
        elements: Sequence[str | int],
        targets: Sequence[str],
        channels: int = 64,
        num_steps: int = 3,
        set2set_steps: int = 6,
        cutoff: float = 5.0,
        num_radial: int = 16,
        edge_hidden: int = 128,
        aggregation: str = "sum",
    ):
        if not targets:
            raise ValueError("MPNN needs at least one target")
        if num_steps < 1 or set2set_steps < 1:
            raise ValueError(f"num_steps and set2set_steps must be >= 1, got {num_steps}, {set2set_steps}")
        super().__init__(targets)
        self.cutoff = float(cutoff)
        self.num_steps = num_steps
        self.element_index = ElementIndex(elements)
        self.domain = TrainingDomain(elements, cutoff)
        self.embedding = torch.nn.Embedding(len(self.element_index), channels)
        self.radial = RadialEmbedding(cutoff, num_radial, basis="gaussian")
        self.message = EdgeNetwork(num_radial, channels, edge_hidden, aggregation)
        self.update = torch.nn.GRUCell(channels, channels)
        self.set2set = Set2Set(channels, processing_steps=set2set_steps)
        self.head = torch.nn.Sequential(
            torch.nn.Linear(2 * channels, channels), torch.nn.SiLU(), torch.nn.Linear(channels, len(self.targets))
        )
        self.register_buffer("per_atom", torch.zeros(len(self.targets), dtype=torch.bool))
        self.reset_parameters()

    @property
    def prediction_units(self) -> dict[str, str]:
        """``{target: unit}`` of :meth:`predict` (:data:`zoo.models._inference.UNITS`)."""
        return units_of(self.targets)

    def reset_parameters(self) -> None:
        """Re-initialise every learnable parameter (the statistics buffers are kept)."""
        self.embedding.reset_parameters()
        self.message.reset_parameters()
        self.update.reset_parameters()
        self.set2set.reset_parameters()
        for layer in self.head:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def network(self, species: torch.Tensor, distances: torch.Tensor, edge_index: torch.Tensor, index: torch.Tensor,
                n_structures: int) -> torch.Tensor:
        """The network's outputs [n_structures, n_targets], before the statistics, from element
        indices, edge lengths (Å), edges and the structure of each atom. A tensor core
        (:func:`~zoo.models.compile_for_inference`)."""
        h = self.embedding(species)
        matrices = self.message.matrices(self.radial(distances))
        for _ in range(self.num_steps):
            h = self.update(self.message(h, edge_index, matrices), h)
        return self.head(self.set2set(h, index, dim_size=n_structures))

    def set_statistics(self, statistics: Statistics | Mapping[str, Mapping]) -> None:
        """Shift, scale and reference energies as :class:`~zoo.models._rescale.RescaledModel`, and
        whether each target's statistics are per atom (then the network predicts per atom)."""
        statistics = Statistics.of(statistics)
        super().set_statistics(statistics)
        for i, target in enumerate(self.targets):
            self.per_atom[i] = statistics.per_atom(target)

    def target_scale(self, target: str) -> tuple[torch.Tensor, bool]:
        scale, _ = super().target_scale(target)
        return scale, bool(self.per_atom[self.targets.index(target)])

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """``{target: [n_structures]}`` in the targets' own units for a structure or a batch."""
        z, pos = batch[keys.ATOMIC_NUMBERS], batch[keys.POSITIONS]
        if pos.dtype != self.embedding.weight.dtype:
            raise ValueError(f"positions are {pos.dtype} but the model's parameters are "
                             f"{self.embedding.weight.dtype}; convert one of them")
        index, size = batch_index(batch), n_structures(batch)
        if keys.EDGE_INDEX in batch:
            edge_index, shift = batch[keys.EDGE_INDEX], None
        else:
            edge_index, shift = radius_graph(pos, self.cutoff, index)
        distances = edge_vectors(batch, edge_index, shift).norm(dim=-1)

        y = inference_core(self, "network")(self.element_index(z), distances, edge_index, index, size)

        # per-atom statistics (extensive energies): the network predicts the standardised energy
        # per atom, which has unit variance by construction, rather than a total growing with size
        n_atoms = scatter(torch.ones_like(pos[:, :1]), index, dim=0, dim_size=size)
        y = self.rescale(y)
        y = torch.where(self.per_atom, n_atoms * y, y) + scatter(self.reference_energies(z), index, dim=0, dim_size=size)
        return {t: y[:, i] for i, t in enumerate(self.targets)}
