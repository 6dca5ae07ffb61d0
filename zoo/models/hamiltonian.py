"""QHNet-style Hamiltonian model: the Kohn–Sham/Fock matrix in an AO basis from the shared backbone.

On-site (diagonal) blocks come from each atom's features, off-site blocks from every ordered pair
of atoms of a molecule; both are predicted as coupled irreps and expanded into AO blocks with
Clebsch–Gordan coefficients (:class:`zoo.nn.AOBlockExpansion`), so the matrix is equivariant by
construction for any element the basis defines. The output is in **PySCF AO order**, flattened
per molecule and concatenated over the batch exactly like the data layer's ``hamiltonian`` key,
so predictions and labels compare entry by entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import torch
from e3nn import o3
from torch_geometric.utils import scatter

from zoo.data import HamiltonianMetadata, batch_index, keys
from zoo.data.elements import SYMBOLS
from zoo.models._compile import inference_core
from zoo.models._domain import TrainingDomain
from zoo.models._orbitals import HamiltonianPredictor
from zoo.models._upgrade import upgrade_state_dict
from zoo.nn import (
    AOBlockExpansion,
    RadialEmbedding,
    RadialMLP,
    coupled_irreps,
    depthwise_tensor_product,
)
from zoo.qc import ao
from zoo.qc.guess import BASES, base_hamiltonian
from zoo.qc.level import LevelOfTheory


def _grouped(irreps: o3.Irreps) -> tuple[o3.Irreps, torch.Tensor]:
    """``irreps`` sorted and merged, and the feature index that reorders a tensor into that layout.

    Concatenated tensor-product outputs list one ``mul x ir`` per path; a linear layer on them
    would have an instruction per (path, output) pair, which e3nn compiles slowly. Grouping equal
    irreps first gives few large blocks.
    """
    sort = irreps.sort()
    slices = irreps.slices()
    index = torch.cat([torch.arange(slices[i].start, slices[i].stop) for i in sort.inv])
    return sort.irreps.simplify(), index


class HamiltonianModel(torch.nn.Module, HamiltonianPredictor):
    """Predicts H in PySCF AO order at one level of theory, symmetric and equivariant by construction.

    * **On-site blocks** ``H_ii``: the atom's features and their channel-wise square ``x ⊗ x``
      (which reaches the ``L <= 2 l_max(basis)`` irreps of d ⊗ d blocks, both parities), mapped
      by one linear layer per element to the block's coupled irreps, expanded and symmetrised.
      The linear layer's biases on the invariant (0e) components are an element's reference
      block (:meth:`fit_onsite_reference`).
    * **Off-site blocks** ``H_ij = f(i, j) + f(j, i)^T`` for **every pair of atoms of a molecule**,
      as in QHNet: DFT Hamiltonians of small molecules have non-zero blocks between all atoms,
      and a cutoff would set real matrix elements to zero. ``f(i, j)`` maps the channel-wise
      product of the two atoms' features (weighted by a radial MLP of their distance) and the
      directional product of their features with ``Y(r̂_ij)`` through one linear layer per
      ordered element pair. Cost grows with the square of the molecule size.

    :meth:`predict` turns ASE structures into H, overlap, orbitals and density matrix (Hartree;
    :class:`~zoo.models._orbitals.HamiltonianPredictor`)::

        model.predict(atoms)["density_matrix"]   # a dm0 for PySCF

    Args:
        backbone: an :class:`~zoo.models.EquivariantBackbone`; ``parity="full"`` gives the
            pseudo-tensor features p ⊗ p and d ⊗ d blocks need (the heads' products make them too).
        level: the level of theory of the labels and self-consistency targets, a
            :class:`zoo.qc.LevelOfTheory` (in a recipe, its fields: ``level: {xc: b3lyp5, basis:
            def2-svp, grid_level: 3}``); every element of the backbone must exist in its basis.
        head_channels: multiplicity of each irrep in the heads.
        pair_cutoff: range (Å) of the radial basis of atom pairs; blocks of atoms farther apart
            are zero, so keep it above the largest interatomic distance of the molecules. It is
            also the range of ``domain``, the :class:`~zoo.models.TrainingDomain` (shortest
            distance per element pair, largest molecule) that the task fits on the training set
            and :meth:`predict` checks.
        num_radial: size of the pair radial basis.
        radial_hidden: width of the pair radial MLPs.
        base: ``None`` to predict H itself, or a cheap physical Hamiltonian to which the network
            adds a learned correction (see :func:`zoo.qc.guess.base_hamiltonian`;
            ``"minao_fock"``: the Fock matrix of the MINAO density). The base is computed with
            PySCF for each new geometry (one Fock build) and cached, ``base_cache_size`` geometries
            at most; self-consistency training works unchanged, on the full H.
        base_cache_size: geometries whose base Hamiltonian is kept in memory.
    """

    #: Methods on tensors alone that :func:`~zoo.models.compile_for_inference` compiles.
    COMPILED_CORES: ClassVar[tuple[str, ...]] = ("onsite_features", "pair_features")

    def __init__(
        self,
        backbone: torch.nn.Module,
        level: LevelOfTheory = LevelOfTheory(),
        head_channels: int = 16,
        pair_cutoff: float = 15.0,
        num_radial: int = 8,
        radial_hidden: int = 64,
        base: str | None = None,
        base_cache_size: int = 8192,
    ):
        super().__init__()
        if base is not None and base not in BASES:
            raise ValueError(f"unknown base Hamiltonian {base!r}; choose None or one of {BASES}")
        self.base = base
        self.base_cache_size = base_cache_size
        self._base_cache: OrderedDict = OrderedDict()
        self.backbone = backbone
        self.level = level
        self.atomic_numbers = list(backbone.element_index.atomic_numbers)
        self.domain = TrainingDomain(self.atomic_numbers, pair_cutoff)
        n_elements = len(self.atomic_numbers)
        irreps_ao = [ao.ao_irreps(self.level.basis, z) for z in self.atomic_numbers]  # raises for a missing element
        # blocks come out in PySCF order: B_pyscf = T_a^T B_e3nn T_b with x_e3nn = T x_pyscf
        to_pyscf = [ao.pyscf_to_e3nn_matrix([z], self.level.basis).T for z in self.atomic_numbers]
        self.register_buffer("n_ao_table", torch.tensor([ir.dim for ir in irreps_ao]), persistent=False)

        targets = {ir for a in irreps_ao for b in irreps_ao for _, ir in coupled_irreps(a, b)}
        l_max = max(ir.l for ir in targets)
        irreps_x = o3.Irreps([(head_channels, ir) for _, ir in backbone.irreps_out]).simplify()

        # on-site head
        self.node_in = o3.Linear(backbone.irreps_out, irreps_x)
        self.node_product = depthwise_tensor_product(irreps_x, irreps_x, targets, weights_per_sample=False)
        irreps_node, node_index = _grouped(irreps_x + self.node_product.irreps_out)
        self.register_buffer("node_index", node_index, persistent=False)
        self.onsite = torch.nn.ModuleList()
        self.onsite_expansion = torch.nn.ModuleList()
        for a in range(n_elements):
            expansion = AOBlockExpansion(irreps_ao[a], irreps_ao[a], to_pyscf[a], to_pyscf[a])
            self.onsite_expansion.append(expansion)
            self.onsite.append(o3.Linear(irreps_node, expansion.irreps_coupled, biases=True))

        # off-site head
        self.pair_radial = RadialEmbedding(pair_cutoff, num_radial, "bessel")
        self.irreps_sh = o3.Irreps.spherical_harmonics(l_max)
        self.spherical_harmonics = o3.SphericalHarmonics(self.irreps_sh, normalize=True, normalization="component")
        self.pair_left = o3.Linear(backbone.irreps_out, irreps_x)
        self.pair_right = o3.Linear(backbone.irreps_out, irreps_x)
        self.pair_product = depthwise_tensor_product(irreps_x, irreps_x, targets)
        self.pair_direction = depthwise_tensor_product(irreps_x, self.irreps_sh, targets)
        self.pair_product_radial = RadialMLP(num_radial, radial_hidden, self.pair_product.weight_numel)
        self.pair_direction_radial = RadialMLP(num_radial, radial_hidden, self.pair_direction.weight_numel)
        irreps_pair, pair_index = _grouped(self.pair_product.irreps_out + self.pair_direction.irreps_out)
        # the products' outputs stay in their channel layouts, concatenated: one gather makes the grouped irreps
        product_size = self.pair_product.irreps_out.dim
        channel_order = torch.cat([self.pair_product.channel_order(), self.pair_direction.channel_order() + product_size])
        self.register_buffer("pair_index", channel_order[pair_index], persistent=False)
        self.offsite = torch.nn.ModuleList()
        self.offsite_expansion = torch.nn.ModuleList()
        for a in range(n_elements):
            for b in range(n_elements):
                expansion = AOBlockExpansion(irreps_ao[a], irreps_ao[b], to_pyscf[a], to_pyscf[b])
                self.offsite_expansion.append(expansion)
                self.offsite.append(o3.Linear(irreps_pair, expansion.irreps_coupled))

        self.register_load_state_dict_pre_hook(upgrade_state_dict)

    # ------------------------------------------------------------------------------------------
    # level of theory and checks

    @property
    def elements(self) -> list[str]:
        return [SYMBOLS[z] for z in self.atomic_numbers]

    def metadata(self) -> HamiltonianMetadata:
        """The :class:`~zoo.data.HamiltonianMetadata` that data for this model must have."""
        return HamiltonianMetadata.computed_at(self.level)

    def check_data(self, metadata) -> None:
        """Raise ``ValueError`` if a dataset's :class:`HamiltonianMetadata` is not the model's level of theory."""
        try:
            self.metadata().check_compatible(metadata)
        except ValueError as error:
            raise ValueError(f"the data do not match the model ({self.level.describe()}): {error}") from None

    # ------------------------------------------------------------------------------------------
    # forward

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """``{"hamiltonian": [sum over molecules of n_ao²]}``: each molecule's H, PySCF order, row-major."""
        out = self.backbone(batch)
        x, species = out.node_features, out.species
        pos, molecule = batch[keys.POSITIONS], batch_index(batch)
        layout = _Layout(self.n_ao_table[species], molecule)
        self._check_batch(batch, layout)

        indices, values = [], []
        # on-site blocks, one element at a time
        node = inference_core(self, "onsite_features")(x)
        for a, (linear, expansion) in enumerate(zip(self.onsite, self.onsite_expansion)):
            atoms = torch.nonzero(species == a).flatten()
            if atoms.numel():
                block = expansion(linear(node[atoms]))
                indices.append(layout.block_indices(atoms, atoms, *block.shape[-2:]))
                values.append(0.5 * (block + block.mT))

        # off-site blocks of all ordered pairs i != j of a molecule
        i, j = layout.pairs()
        if i.numel():
            # blocks differ in shape per ordered element pair: one linear layer and expansion each.
            # The pairs are put in element-pair order before their features are made, so that each
            # element pair's features are a contiguous chunk (the backward of a split is a
            # concatenation; gathering the rows of each type would zero-fill a gradient the size
            # of all the features once per type)
            n = len(self.atomic_numbers)
            pair_type = species[i] * n + species[j]
            order = torch.argsort(pair_type, stable=True)
            sorted_position = torch.empty_like(order)
            sorted_position[order] = torch.arange(order.numel(), device=order.device)
            # H_ij = f(i, j) + f(j, i)^T: where the pair (j, i) of each pair is, in the new order
            reverse = sorted_position[layout.reverse_pairs(i, j)[order]]
            i, j, pair_type = i[order], j[order], pair_type[order]
            features = inference_core(self, "pair_features")(x, pos, i, j)
            types, counts = torch.unique_consecutive(pair_type, return_counts=True)
            types, counts = types.tolist(), counts.tolist()
            starts = dict(zip(types, np.cumsum([0, *counts[:-1]]).tolist()))
            blocks = {t: self.offsite_expansion[t](self.offsite[t](chunk))
                      for t, chunk in zip(types, torch.split(features, counts))}
            for t, count in zip(types, counts):
                a, b = divmod(t, n)
                rows = slice(starts[t], starts[t] + count)
                block = blocks[t] + blocks[b * n + a][reverse[rows] - starts[b * n + a]].mT
                indices.append(layout.block_indices(i[rows], j[rows], *block.shape[-2:]))
                values.append(block)

        flat = torch.cat([v.reshape(-1) for v in values])
        hamiltonian = flat.new_zeros(layout.total).index_put((torch.cat([k.reshape(-1) for k in indices]),), flat)
        if self.base is not None:
            hamiltonian = hamiltonian + self.base_matrices(batch[keys.ATOMIC_NUMBERS], pos, molecule).to(hamiltonian)
        return {keys.HAMILTONIAN: hamiltonian}

    def onsite_features(self, x: torch.Tensor) -> torch.Tensor:
        """The on-site head's input [n_atoms, irreps_node.dim]: the atoms' features ``x`` (the
        backbone's) and their channel-wise square. A tensor core (:func:`~zoo.models.compile_for_inference`)."""
        node = self.node_in(x)
        return torch.cat([node, self.node_product(node, node)], dim=-1)[:, self.node_index]

    def pair_features(self, x: torch.Tensor, pos: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """The off-site head's input [n_pairs, irreps_pair.dim] for the ordered atom pairs ``(i, j)``:
        the radially weighted product of their features and the product with the pair's direction.
        A tensor core (:func:`~zoo.models.compile_for_inference`)."""
        vectors = pos[j] - pos[i]
        radial = self.pair_radial(vectors.norm(dim=-1))
        product, direction = self.pair_product, self.pair_direction
        # both products read irreps_x: the atoms go to their channel layout once, before the gather into pairs
        left, right = product.to_channels(self.pair_left(x)), product.to_channels(self.pair_right(x))
        sh = direction.to_channels(self.spherical_harmonics(vectors), 2)
        return torch.cat([
            product.contract(left[i], right[j], self.pair_product_radial(radial)).flatten(1),
            direction.contract(left[i] + right[j], sh, self.pair_direction_radial(radial)).flatten(1),
        ], dim=-1)[:, self.pair_index]

    def base_matrices(self, z: torch.Tensor, pos: torch.Tensor, molecule: torch.Tensor) -> torch.Tensor:
        """The base Hamiltonian of every molecule, flattened and concatenated like the output.

        Computed with PySCF (float64) once per geometry and cached; never differentiated (it
        depends on positions only, and no loss here takes gradients with respect to them).
        """
        z_np = z.detach().cpu().numpy()
        pos_np = pos.detach().cpu().double().numpy()
        bounds = torch.cumsum(torch.bincount(molecule.cpu()), 0).tolist()
        parts = []
        for start, end in zip([0, *bounds[:-1]], bounds):
            key = geometry_key(z_np[start:end], pos_np[start:end])
            matrix = self._base_cache.get(key)
            if matrix is None:
                matrix = torch.from_numpy(base_hamiltonian(self.base, z_np[start:end], pos_np[start:end], self.level))
                self._base_cache[key] = matrix
                if len(self._base_cache) > self.base_cache_size:
                    self._base_cache.popitem(last=False)
            else:
                self._base_cache.move_to_end(key)
            parts.append(matrix.reshape(-1))
        return torch.cat(parts)

    def _check_batch(self, batch, layout: _Layout) -> None:
        if keys.N_AO in batch and batch[keys.N_AO] is not None:
            expected = batch[keys.N_AO].reshape(-1).to(layout.n_ao.device)
            if not torch.equal(expected, layout.n_ao):
                raise ValueError(
                    f"the data have {expected.tolist()} AOs per molecule but {self.level.basis} gives "
                    f"{layout.n_ao.tolist()}: the labels were made in another basis or AO layout"
                )
        if keys.N_ELECTRONS in batch and batch[keys.N_ELECTRONS] is not None:
            z = batch[keys.ATOMIC_NUMBERS]
            nuclear = scatter(z, layout.molecule, dim=0, dim_size=layout.n_ao.numel(), reduce="sum")
            charge = nuclear - batch[keys.N_ELECTRONS].reshape(-1)
            if bool((charge != self.level.charge).any()):
                raise ValueError(
                    f"molecules with charges {sorted(set(charge.tolist()))}, but this model predicts "
                    f"charge {self.level.charge} (closed shell) only"
                )

    # ------------------------------------------------------------------------------------------
    # statistics and the base Hamiltonian

    @torch.no_grad()
    def fit_onsite_reference(self, structures: Iterable) -> None:
        """Set each element's reference on-site block to the invariant part of its mean block.

        ``structures`` are :class:`~zoo.data.AtomicData` with ``z`` and a flattened PySCF-order
        ``hamiltonian`` (labels, or any guess such as H[D_MINAO]). The invariant (0e) coupled
        components of the mean block become the biases of the element's on-site layer, so that
        the model starts from a sensible core-level spectrum instead of zero. With a ``base``,
        the blocks are those of ``hamiltonian`` minus the base (the structures need ``pos``).
        """
        sums = [None] * len(self.atomic_numbers)
        counts = [0] * len(self.atomic_numbers)
        for data in structures:
            z = data[keys.ATOMIC_NUMBERS].cpu()
            h = data[keys.HAMILTONIAN].detach().cpu().double()
            offsets = ao.ao_offsets(z.numpy(), self.level.basis)
            n = int(offsets[-1])
            if h.numel() != n * n:
                raise ValueError(f"a hamiltonian with {h.numel()} entries does not fit {n} AOs of {self.level.basis}")
            h = h.reshape(n, n)
            if self.base is not None:
                molecule = torch.zeros(z.numel(), dtype=torch.long)
                h = h - self.base_matrices(z, data[keys.POSITIONS], molecule).reshape(n, n)
            for atom, species in enumerate(self.backbone.element_index(z).tolist()):
                block = h[offsets[atom]:offsets[atom + 1], offsets[atom]:offsets[atom + 1]]
                sums[species] = block if sums[species] is None else sums[species] + block
                counts[species] += 1
        for species, (linear, expansion) in enumerate(zip(self.onsite, self.onsite_expansion)):
            if not counts[species]:
                continue
            coupled = expansion.project((sums[species] / counts[species]).to(expansion.matrix.dtype))
            scalar = torch.cat([coupled[s] for s, (_, ir) in zip(expansion.irreps_coupled.slices(),
                                                                    expansion.irreps_coupled) if ir.is_scalar()])
            linear.bias.copy_(scalar.to(linear.bias.dtype))

    def remember_base(self, z, positions, base) -> None:
        """Keep ``base`` [n_ao, n_ao] (Hartree) as the base Hamiltonian of the molecule ``(z, positions Å)``,
        for a caller that already has it (see :meth:`predict`); nothing to keep without a ``base``."""
        if self.base is not None:
            self._base_cache[geometry_key(np.asarray(z, dtype=np.int64), positions)] = torch.as_tensor(base)


def geometry_key(z, positions) -> tuple[bytes, bytes]:
    """Cache key of a molecule's base Hamiltonian: its atomic numbers and positions (Å) to float32
    precision, so that a float32 model finds the base a caller gave for the float64 geometry (the
    bases of geometries within 1e-7 relative of each other differ by far less than any model error)."""
    return np.asarray(z, dtype=np.int64).tobytes(), np.asarray(positions, dtype=np.float64).astype(np.float32).tobytes()


class _Layout:
    """Where each atom's AOs sit in the flattened, concatenated per-molecule matrices of a batch."""

    def __init__(self, n_ao_atom: torch.Tensor, molecule: torch.Tensor):
        n_molecules = int(molecule.max()) + 1 if molecule.numel() else 0
        self.molecule = molecule
        self.n_ao = scatter(n_ao_atom, molecule, dim=0, dim_size=n_molecules, reduce="sum")
        first_ao = torch.cumsum(self.n_ao, 0) - self.n_ao
        # atom's first AO within its molecule
        self.atom_offset = torch.cumsum(n_ao_atom, 0) - n_ao_atom - first_ao[molecule]
        squares = self.n_ao**2
        self.base = torch.cumsum(squares, 0) - squares
        self.total = int(squares.sum())

    def block_indices(self, rows: torch.Tensor, cols: torch.Tensor, n_row: int, n_col: int) -> torch.Tensor:
        """Flat indices ``[n_blocks, n_row, n_col]`` of the blocks of atoms ``rows[k]``, ``cols[k]``."""
        m = self.molecule[rows]
        r = self.atom_offset[rows, None, None] + torch.arange(n_row, device=rows.device)[None, :, None]
        c = self.atom_offset[cols, None, None] + torch.arange(n_col, device=rows.device)[None, None, :]
        return self.base[m, None, None] + r * self.n_ao[m, None, None] + c

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All ordered pairs ``(i, j)``, ``i != j``, of atoms of the same molecule, sorted by (i, j)."""
        same = self.molecule[:, None] == self.molecule[None, :]
        same.fill_diagonal_(False)
        i, j = torch.nonzero(same, as_tuple=True)
        return i, j

    @staticmethod
    def reverse_pairs(i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """For each pair k = (i, j), the index of the pair (j, i) (pairs sorted by (i, j))."""
        n = int(torch.maximum(i.max(), j.max())) + 1
        key = i * n + j
        return torch.searchsorted(key, j * n + i)
