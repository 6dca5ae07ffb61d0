"""The equivariant backbone shared by the model families: node features of any irreps up to l_max."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple

import torch
from e3nn import o3

from zoo.data import keys
from zoo.data.elements import ElementIndex
from zoo.data.neighbors import radius_graph
from zoo.models._compile import inference_core
from zoo.nn import ElementEmbedding, Interaction, ManyBodyInteraction, RadialEmbedding, hidden_irreps

#: The interaction layers :class:`EquivariantBackbone` can be built with.
INTERACTIONS = ("two_body", "many_body")


class BackboneOutput(NamedTuple):
    """What heads get from the backbone, so that they need not recompute the graph.

    Attributes:
        node_features: [n_atoms, irreps_out.dim] equivariant node features.
        species: [n_atoms] element indices (into the backbone's ``element_index.atomic_numbers``).
        edge_index: [2, n_edges], row 0 the neighbour j, row 1 the centre i.
        edge_vectors: [n_edges, 3] r_j - r_i (+ lattice shift), Å, differentiable in positions.
        edge_sh: [n_edges, irreps_sh.dim] spherical harmonics of the edge directions (component
            normalisation, e3nn's basis; with e3nn 0.6 the l=1 part is sqrt(3) (x, y, z) / r).
        edge_radial: [n_edges, num_radial] radial basis times the cutoff envelope.
    """

    node_features: torch.Tensor
    species: torch.Tensor
    edge_index: torch.Tensor
    edge_vectors: torch.Tensor
    edge_sh: torch.Tensor
    edge_radial: torch.Tensor


class EquivariantBackbone(torch.nn.Module):
    """NequIP/MACE-style E(3)-equivariant message passing with depthwise tensor products.

    Atoms start from an element embedding (``channels x 0e``); each of ``num_layers`` interaction
    layers convolves them with the spherical harmonics of the edges and gates the result:

    - ``interaction="two_body"`` (NequIP's, the default): :class:`zoo.nn.Interaction`, whose
      messages are sums over single neighbours, so one layer's invariants see distances only and
      angles enter through the equivariant features of the next layer;
    - ``interaction="many_body"`` (MACE's): :class:`zoo.nn.ManyBodyInteraction`, where the summed
      messages (the atomic basis A) are raised to channel-wise tensor powers up to
      ``correlation`` by a :class:`zoo.nn.ProductBasis` with weights per element, before the
      same per-element self-connection and gate. One layer then has body order
      ``correlation + 1``: its invariants already depend on the angles between pairs of
      neighbours (and, from ``correlation=3``, on the shape of triples of neighbours).

    The output has ``channels`` copies of each irrep l <= ``l_max`` (see
    :func:`zoo.nn.hidden_irreps` for ``parity``). Outputs rotate with ``irreps_out.D_from_matrix``,
    are invariant to translations and follow permutations of the atoms; everything is twice
    differentiable in the positions, so force heads can train on forces.

    Args:
        elements: the elements the model knows, as symbols or atomic numbers.
        channels: multiplicity of each irrep.
        l_max: highest angular momentum of the features and edge spherical harmonics.
        num_layers: number of interactions.
        cutoff: radius (Å) of the neighbourhood; edges beyond it contribute nothing.
        num_radial: size of the radial basis.
        radial_basis: ``"bessel"`` or ``"gaussian"`` (both times a p=6 polynomial envelope).
        radial_hidden: width of the radial MLPs.
        parity: ``"natural"`` (0e, 1o, 2e, ...) or ``"full"`` (also 1e, 2o, ...).
        avg_num_neighbors: typical number of neighbours; sums over neighbours are divided by its
            square root.
        extra_node_irreps: irreps (e.g. ``"1x1o"``) of optional extra per-atom equivariant inputs
            passed to :meth:`forward`, such as DeNS's encoded forces or a diffusion model's
            invariant conditioning (``"24x0e"``); ``None`` for none.
        edge_scalar_dim: size of optional invariant edge features (bond types, graph distances,
            ...) read from the data's ``edge_features`` ([n_edges, edge_scalar_dim], one row per
            column of the given ``edge_index``). They join the radial basis at the input of every
            radial MLP, multiplied by the same cutoff envelope, so that messages still vanish
            smoothly at the cutoff. 0 for none.
        interaction: ``"two_body"`` or ``"many_body"`` (see above); the product basis's
            parameters exist only with ``"many_body"``.
        correlation: highest power of the atomic basis in a ``"many_body"`` interaction (MACE's
            default 3: body order 4); unused by ``"two_body"``.
        earlier_scalars: the node features also carry the invariant (0e) channels of every
            earlier layer, appended as ``(num_layers - 1) * channels`` more scalars, so that an
            invariant readout sees each layer's scalars as MACE's per-layer energy readouts do
            (which shortens the path from early layers to the energy). ``irreps_out`` says so.

    :meth:`forward` checks the data and builds the graph, then runs :meth:`features`, the
    computation on tensors alone that :func:`~zoo.models.compile_for_inference` compiles.
    """

    #: Methods on tensors alone that :func:`~zoo.models.compile_for_inference` compiles.
    COMPILED_CORES: ClassVar[tuple[str, ...]] = ("features",)

    def __init__(
        self,
        elements: Sequence[str | int],
        channels: int = 32,
        l_max: int = 2,
        num_layers: int = 3,
        cutoff: float = 5.0,
        num_radial: int = 8,
        radial_basis: str = "bessel",
        radial_hidden: int = 64,
        parity: str = "natural",
        avg_num_neighbors: float = 10.0,
        extra_node_irreps: str | None = None,
        edge_scalar_dim: int = 0,
        interaction: str = "two_body",
        correlation: int = 3,
        earlier_scalars: bool = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if edge_scalar_dim < 0:
            raise ValueError(f"edge_scalar_dim must be >= 0, got {edge_scalar_dim}")
        if interaction not in INTERACTIONS:
            raise ValueError(f"interaction must be one of {INTERACTIONS}, got {interaction!r}")
        if correlation < 1:
            raise ValueError(f"correlation must be at least 1, got {correlation}")
        self.edge_scalar_dim = int(edge_scalar_dim)
        self.cutoff = float(cutoff)
        self.element_index = ElementIndex(elements)
        self.embedding = ElementEmbedding(len(self.element_index), channels)
        self.radial = RadialEmbedding(cutoff, num_radial, radial_basis)
        self.irreps_sh = o3.Irreps.spherical_harmonics(l_max)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.irreps_out = hidden_irreps(channels, l_max, parity)

        # extra inputs enter as `channels` copies of their irreps next to the embedding's scalars
        irreps = self.embedding.irreps_out
        self.irreps_extra = None if extra_node_irreps is None else o3.Irreps(extra_node_irreps)
        self.extra_linear = None
        if self.irreps_extra is not None:
            if self.irreps_extra.dim == 0:
                raise ValueError(f"extra_node_irreps {extra_node_irreps!r} are empty; use None for no extra input")
            others = sorted({ir for _, ir in self.irreps_extra} - {o3.Irrep("0e")})
            irreps = irreps + o3.Irreps([(channels, ir) for ir in others])
            self.extra_linear = o3.Linear(self.irreps_extra, irreps)
        self.irreps_in = irreps
        # zeros padding the embedding to irreps_in; an int, as compiled code must not read e3nn's
        # Irreps (torch.compile's guards fail on them)
        self._extra_width = irreps.dim - channels
        self._extra_dim = 0 if self.irreps_extra is None else self.irreps_extra.dim

        self.interactions = torch.nn.ModuleList()
        for _ in range(num_layers):
            args = (irreps, self.irreps_out, self.irreps_sh, num_radial + self.edge_scalar_dim, radial_hidden,
                    avg_num_neighbors)
            if interaction == "two_body":
                layer = Interaction(*args, num_elements=len(self.element_index))
            else:
                layer = ManyBodyInteraction(*args, num_elements=len(self.element_index), correlation=correlation)
            self.interactions.append(layer)
            irreps = self.irreps_out
        # the 0e channels of a layer's output, kept from every layer but the last
        hidden = self.irreps_out
        scalars = hidden.slices()[next(i for i, (_, ir) in enumerate(hidden) if ir == o3.Irrep("0e"))]
        self._scalars = (scalars.start, scalars.stop) if earlier_scalars else None
        if earlier_scalars and num_layers > 1:
            self.irreps_out = hidden + o3.Irreps([((num_layers - 1) * (scalars.stop - scalars.start), "0e")])

    def reset_parameters(self) -> None:
        self.embedding.reset_parameters()
        if self.extra_linear is not None:
            torch.nn.init.normal_(self.extra_linear.weight)
        for interaction in self.interactions:
            interaction.reset_parameters()

    def forward(self, data, extra_node_features: torch.Tensor | None = None) -> BackboneOutput:
        """Node features of a structure or batch.

        Args:
            data: an :class:`zoo.data.AtomicData` or a PyG batch of them, with positions and atomic
                numbers; ``edge_index``/``edge_cell_shift`` are used if present and computed within
                :attr:`cutoff` otherwise. A backbone with ``edge_scalar_dim`` needs the
                ``edge_index`` given, with its ``edge_features``.
            extra_node_features: [n_atoms, irreps_extra.dim] in e3nn's basis (with e3nn 0.6 a
                Cartesian vector (x, y, z) is a ``1o`` as it is), only for a backbone built with
                ``extra_node_irreps``; omitted means zeros.
        """
        pos = data[keys.POSITIONS]
        dtype = self.embedding.weight.dtype
        if pos.dtype != dtype:
            raise ValueError(
                f"positions are {pos.dtype} but the backbone's parameters are {dtype}; convert one of "
                "them (model.double() / model.float(), or build the data with that dtype)"
            )
        species = self.element_index(data[keys.ATOMIC_NUMBERS])
        if extra_node_features is not None:
            if self.extra_linear is None:
                raise ValueError("extra_node_features given, but this backbone was built with extra_node_irreps=None")
            self._check_extra(extra_node_features, pos)

        edge_index, shift = _get(data, keys.EDGE_INDEX), _get(data, keys.EDGE_CELL_SHIFT)
        if edge_index is None:
            if self.edge_scalar_dim:
                raise ValueError(
                    f"this backbone reads edge features (edge_scalar_dim={self.edge_scalar_dim}), so the data "
                    f"must carry {keys.EDGE_INDEX!r} and {keys.EDGE_FEATURES!r}; a radius graph has no edge features"
                )
            edge_index, shift = radius_graph(
                pos, self.cutoff, _get(data, keys.BATCH), _get(data, keys.CELL), _get(data, keys.PBC)
            )
        edge_features = None
        if self.edge_scalar_dim:
            edge_features = self._check_edge_features(_get(data, keys.EDGE_FEATURES), edge_index, pos)
        features = inference_core(self, "features")
        return features(species, pos, edge_index, _lattice_offsets(data, edge_index, shift), extra_node_features,
                        edge_features)

    def features(
        self,
        species: torch.Tensor,
        pos: torch.Tensor,
        edge_index: torch.Tensor,
        edge_offsets: torch.Tensor | None = None,
        extra_node_features: torch.Tensor | None = None,
        edge_features: torch.Tensor | None = None,
    ) -> BackboneOutput:
        """Node features on a given graph, from tensors alone: no checks, no neighbour search.

        Args:
            species: [n_atoms] element indices (``element_index(z)``).
            pos: [n_atoms, 3] positions, Å.
            edge_index: [2, n_edges], row 0 the neighbour j, row 1 the centre i.
            edge_offsets: [n_edges, 3] lattice translations (Å) added to r_j - r_i, or ``None``
                (molecules).
            extra_node_features: as :meth:`forward`'s, or ``None``.
            edge_features: [n_edges, edge_scalar_dim], for a backbone built with edge_scalar_dim.
        """
        x = self.embedding(species)
        if self.extra_linear is not None:
            x = torch.cat([x, x.new_zeros(x.shape[0], self._extra_width)], dim=-1)
            if extra_node_features is None:  # zeros in, zeros out (no biases): but every parameter is
                # used in every step, which DDP requires of a model trained with and without the input
                extra_node_features = x.new_zeros(x.shape[0], self._extra_dim)
            x = x + self.extra_linear(extra_node_features)
        neighbour, centre = edge_index
        vectors = pos[neighbour] - pos[centre]
        if edge_offsets is not None:
            vectors = vectors + edge_offsets
        lengths = vectors.norm(dim=-1)
        edge_sh = self.spherical_harmonics(vectors)
        edge_radial = self.radial(lengths)
        radial_input = edge_radial
        if edge_features is not None:
            radial_input = torch.cat([edge_radial, edge_features * self.radial.envelope(lengths).unsqueeze(-1)], dim=-1)
        earlier = []
        for number, interaction in enumerate(self.interactions):
            x = interaction(x, species, edge_index, edge_sh, radial_input)
            if self._scalars is not None and number < len(self.interactions) - 1:
                earlier.append(x[:, self._scalars[0]:self._scalars[1]])
        if earlier:
            x = torch.cat([x, *earlier], dim=-1)
        return BackboneOutput(x, species, edge_index, vectors, edge_sh, edge_radial)

    def _check_extra(self, extra: torch.Tensor, pos: torch.Tensor) -> None:
        expected = (pos.shape[0], self.irreps_extra.dim)
        if tuple(extra.shape) != expected:
            raise ValueError(
                f"extra_node_features have shape {tuple(extra.shape)}, expected {list(expected)} "
                f"([n_atoms, dim of {self.irreps_extra}])"
            )
        if extra.dtype != pos.dtype:
            raise ValueError(f"extra_node_features are {extra.dtype} but positions are {pos.dtype}")

    def _check_edge_features(self, features, edge_index: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        expected = (edge_index.shape[1], self.edge_scalar_dim)
        if features is None:
            raise ValueError(f"this backbone reads edge features (edge_scalar_dim={self.edge_scalar_dim}): "
                             f"the data need {keys.EDGE_FEATURES!r} {list(expected)} next to their edge_index")
        if tuple(features.shape) != expected:
            raise ValueError(f"{keys.EDGE_FEATURES!r} have shape {tuple(features.shape)}, expected {list(expected)} "
                             "([n_edges of edge_index, edge_scalar_dim])")
        if features.dtype != pos.dtype:
            raise ValueError(f"{keys.EDGE_FEATURES!r} are {features.dtype} but positions are {pos.dtype}")
        return features


def _get(data, key: str):
    return data[key] if key in data else None


def _lattice_offsets(data, edge_index: torch.Tensor, shift: torch.Tensor | None) -> torch.Tensor | None:
    """``shift @ cell`` [n_edges, 3] (Å) as :func:`zoo.data.neighbors.edge_vectors` adds it, or
    ``None`` when no edge crosses a periodic boundary."""
    if shift is None or keys.CELL not in data or not bool(shift.any()):
        return None
    pos = data[keys.POSITIONS]
    batch = _get(data, keys.BATCH)
    batch = torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device) if batch is None else batch
    cell = data[keys.CELL].reshape(-1, 3, 3)[batch[edge_index[1]]]
    return torch.einsum("ek,ekd->ed", shift.to(pos.dtype), cell)
