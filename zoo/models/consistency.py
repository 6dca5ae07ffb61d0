r"""Energy and equilibrium structure of a molecular graph from one shared encoder, kept consistent
with each other (Ren et al., NeurIPS 2024, "Physical Consistency Bridges Heterogeneous Data in
Molecular Multi-Task Learning", arXiv 2410.10118).

One :class:`~zoo.models.EquivariantBackbone` encodes the molecular graph (atoms and bonds from
RDKit) and a 3D structure. Two heads read it:

- the **energy model** :math:`E_\theta(G, R)` (eV), the backbone at diffusion time 0 on a real
  structure plus the invariant energy readout of :class:`~zoo.models.ForceFieldModel`
  (per-atom sum, per-element reference energies); forces are :math:`-\nabla_R E`;
- the **structure generator**, a denoising diffusion model over the coordinates: the backbone at
  time t on noisy coordinates plus the equivariant l=1 :class:`~zoo.nn.DenoisingHead`, with
  one-shot denoising (:meth:`ConsistencyModel.one_shot`), DDIM sampling from noise
  (:meth:`ConsistencyModel.sample_ddim`) and refinement (DDIM from a noised MMFF structure, a
  physical starting point, so the generator only has to correct it).

The diffusion's conventions (variance preserving, normalised and centred coordinates, the
v-parametrisation) and its pieces are :mod:`zoo.models._diffusion`.

**The frozen energy model** (:meth:`ConsistencyModel.frozen_energy`) is how the consistency losses
of :mod:`zoo.losses` (optimality and score consistency) score generated structures: the energy model
as a fixed function of the positions, without a graph to its parameters (the docs of those losses
say why).
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import torch
from e3nn import o3

from zoo.data import batch_index, keys, n_structures
from zoo.data.transforms import ATOM_FEATURE_NAMES
from zoo.models._diffusion import DiffusionSchedule, Noised, centre, centred_noise, random_times, time_embedding
from zoo.models._molecules import MolecularInterface, etkdg_conformer, refinement_starts
from zoo.models.force_field import ForceFieldModel
from zoo.nn import DenoisingHead

#: Bond classes of the edge features: 0 no bond, then zoo.data.molgraph's codes 1..4.
N_BOND_CLASSES = 5

MODES = ("ddim", "one_shot", "refine")


def molecular_edges(
    n_atoms: torch.Tensor, bond_index: torch.Tensor, bond_type: torch.Tensor, max_distance: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered pairs of atoms of each molecule, with invariant features from the bond graph.

    Args:
        n_atoms: [n_molecules] atoms per molecule (atoms are numbered molecule after molecule).
        bond_index: [2, n_bonds] bonded pairs (both directions), batch-wide atom numbers.
        bond_type: [n_bonds] 1 single, 2 double, 3 triple, 4 aromatic.
        max_distance: graph distances are one-hot 1, 2, ..., ``max_distance - 1`` and
            "``max_distance`` or more, or not connected".

    Returns:
        ``edge_index`` [2, n_pairs] (row 0 the neighbour j, row 1 the centre i) and
        ``edge_features`` [n_pairs, 5 + max_distance]: bond class one-hot (none, single, double,
        triple, aromatic) then graph distance one-hot.
    """
    device = n_atoms.device
    n_molecules, size = n_atoms.numel(), int(n_atoms.max())
    start = torch.cumsum(n_atoms, 0) - n_atoms
    molecule = torch.repeat_interleave(torch.arange(n_molecules, device=device), n_atoms)
    local = torch.arange(molecule.numel(), device=device) - start[molecule]
    bonds = torch.zeros(n_molecules, size, size, dtype=torch.long, device=device)
    j, i = bond_index
    bonds[molecule[j], local[j], local[i]] = bond_type
    # breadth-first search on all molecules at once: distance d reached by d bond steps
    adjacency = (bonds > 0).to(dtype)
    distance = torch.full_like(bonds, max_distance)
    reached = torch.eye(size, dtype=torch.bool, device=device).expand(n_molecules, size, size).clone()
    frontier = reached
    for d in range(1, max_distance):
        frontier = (frontier.to(dtype) @ adjacency > 0) & ~reached
        distance[frontier] = d
        reached |= frontier
    exists = torch.arange(size, device=device) < n_atoms.unsqueeze(-1)
    pairs = exists.unsqueeze(-1) & exists.unsqueeze(-2) & ~torch.eye(size, dtype=torch.bool, device=device)
    m, centre, neighbour = pairs.nonzero(as_tuple=True)
    edge_index = torch.stack([start[m] + neighbour, start[m] + centre])
    features = torch.cat([
        torch.nn.functional.one_hot(bonds[m, centre, neighbour], N_BOND_CLASSES),
        torch.nn.functional.one_hot(distance[m, centre, neighbour] - 1, max_distance),
    ], dim=-1).to(dtype)
    return edge_index, features


class ConsistencyModel(MolecularInterface, ForceFieldModel):
    """An energy model and an equilibrium-structure generator on one shared backbone.

    Called on a batch (``model(batch)``), it is the energy model: ``{"energy": [n] eV, "forces":
    [n_atoms, 3] eV/Å}`` as a :class:`~zoo.models.ForceFieldModel`, on the molecular graph of each
    structure (``bond_index``, ``bond_type``, ``atom_features``: read the data with
    ``read_ase(..., molecular_graph=True)``). The generator is used through :meth:`one_shot`,
    :meth:`sample_ddim` and :meth:`generate`; :meth:`predict` (and :meth:`energy`, for one
    structure) and the ASE calculator of :meth:`as_calculator` score ASE structures that carry
    their SMILES (:class:`~zoo.models._molecules.MolecularInterface`)::

        structures = model.generate("CCO", k=4)      # ase.Atoms, info["smiles"] set
        model.predict(structures)                     # [{"energy": eV, "forces": eV/Å}, ...]

    The backbone must be built for the conditioning: ``extra_node_irreps`` with
    ``len(ATOM_FEATURE_NAMES) + time_features`` scalars (the atom features of
    :mod:`zoo.data.transforms` and the diffusion time) and ``edge_scalar_dim = 5 +
    max_graph_distance`` (bond class and graph distance of every pair); the error for another
    backbone says which values.

    Args:
        backbone: the shared :class:`~zoo.models.EquivariantBackbone` (l_max >= 1).
        hidden: width of the energy readout MLP.
        head_hidden: width of the noise head.
        timesteps: T of the diffusion.
        schedule: ``"cosine"`` or ``"linear"`` (:class:`~zoo.models.DiffusionSchedule`).
        position_scale: s (Å), the unit of the normalised coordinates (unit noise = s Å).
        time_features: size of the sinusoidal time embedding (even).
        max_graph_distance: graph distances up to this (and "farther") are edge features.
        max_atoms: the largest molecule (atoms, hydrogens included) the model accepts.
        one_shot_start: default starting time of the modes that start from an RDKit structure
            (``one_shot``, ``refine``), as a fraction of T.
        max_noise_time: the generator learns noise times up to this fraction of T only: below 1
            it is a refiner of structures (modes ``one_shot`` and ``refine`` from at most this
            time), not a generator from noise, and spends its capacity where refinement needs it.
    """

    def __init__(
        self,
        backbone: torch.nn.Module,
        hidden: int = 64,
        head_hidden: int = 16,
        timesteps: int = 1000,
        schedule: str = "cosine",
        position_scale: float = 1.25,
        time_features: int = 16,
        max_graph_distance: int = 4,
        max_atoms: int = 29,
        one_shot_start: float = 0.2,
        max_noise_time: float = 1.0,
    ):
        super().__init__(backbone, hidden, forces=True)
        if time_features < 2 or time_features % 2:
            raise ValueError(f"time_features must be even and >= 2, got {time_features}")
        if max_graph_distance < 2:
            raise ValueError(f"max_graph_distance must be >= 2, got {max_graph_distance}")
        if not position_scale > 0 or max_atoms < 1 or not 0 < one_shot_start <= 1 or not 0 < max_noise_time <= 1:
            raise ValueError("need position_scale > 0 (Å), max_atoms >= 1, 0 < one_shot_start <= 1 and "
                             "0 < max_noise_time <= 1")
        if one_shot_start > max_noise_time:
            raise ValueError(f"one_shot_start={one_shot_start} is later than the generator learns "
                             f"(max_noise_time={max_noise_time}): lower it or raise max_noise_time")
        n_extra = len(ATOM_FEATURE_NAMES) + time_features
        edge_dim = N_BOND_CLASSES + max_graph_distance
        irreps_extra = getattr(backbone, "irreps_extra", None)
        if irreps_extra != o3.Irreps(f"{n_extra}x0e") or getattr(backbone, "edge_scalar_dim", 0) != edge_dim:
            raise ValueError(
                f"the backbone must take the model's conditioning: build it with extra_node_irreps='{n_extra}x0e' "
                f"({len(ATOM_FEATURE_NAMES)} atom features + time_features={time_features}) and "
                f"edge_scalar_dim={edge_dim} ({N_BOND_CLASSES} bond classes + max_graph_distance={max_graph_distance}); "
                f"it has extra_node_irreps={irreps_extra} and edge_scalar_dim={getattr(backbone, 'edge_scalar_dim', 0)}"
            )
        self.noise_head = DenoisingHead(backbone.irreps_out, head_hidden)
        self.schedule = DiffusionSchedule(timesteps, schedule)
        self.position_scale = float(position_scale)
        self.time_features = int(time_features)
        self.max_graph_distance = int(max_graph_distance)
        self.max_atoms = int(max_atoms)
        self.one_shot_start = float(one_shot_start)
        self.max_noise_time = float(max_noise_time)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.noise_head.reset_parameters()

    @property
    def elements(self) -> list[str]:
        """The element symbols the model knows."""
        return self.backbone.element_index.symbols

    # --- the shared encoder's inputs --------------------------------------------------------

    def prepare(self, batch):
        """A shallow copy of ``batch`` with the model's graph: every pair of atoms of a molecule as
        ``edge_index``, with their ``edge_features`` (:func:`molecular_edges`).

        Raises:
            ValueError: the batch lacks the molecular graph, is periodic, or has a molecule larger
                than ``max_atoms``.
        """
        missing = [key for key in (keys.BOND_INDEX, keys.BOND_TYPE, keys.ATOM_FEATURES) if key not in batch]
        if missing:
            raise ValueError(
                f"the structures carry no molecular graph ({missing} missing): read them with "
                "read_ase(..., molecular_graph=True) (reader_kwargs of the data module) or apply "
                "zoo.data.transforms.MolecularGraph; for ASE atoms use model.energy(atoms, smiles=...)"
            )
        if keys.PBC in batch and bool(batch[keys.PBC].any()):
            raise ValueError("the consistency model is for molecules; periodic structures are not supported")
        n_atoms = batch[keys.N_ATOMS].reshape(-1)
        if int(n_atoms.max()) > self.max_atoms:
            raise ValueError(f"a molecule of {int(n_atoms.max())} atoms is larger than this model supports "
                             f"(max_atoms={self.max_atoms}, hydrogens included)")
        pos = batch[keys.POSITIONS]
        edge_index, edge_features = molecular_edges(
            n_atoms, batch[keys.BOND_INDEX], batch[keys.BOND_TYPE], self.max_graph_distance, pos.dtype
        )
        prepared = copy.copy(batch)
        prepared[keys.EDGE_INDEX] = edge_index
        prepared[keys.EDGE_FEATURES] = edge_features
        if keys.EDGE_CELL_SHIFT in prepared:
            del prepared[keys.EDGE_CELL_SHIFT]
        return prepared

    def _conditioning(self, batch, t: torch.Tensor) -> torch.Tensor:
        """Invariant node inputs: the atom features and the embedding of each molecule's time."""
        atom_features = batch[keys.ATOM_FEATURES]
        if atom_features.shape[-1] != len(ATOM_FEATURE_NAMES):
            raise ValueError(f"atom_features have {atom_features.shape[-1]} columns, the model expects "
                             f"{len(ATOM_FEATURE_NAMES)} (zoo.data.transforms.ATOM_FEATURE_NAMES)")
        dtype = batch[keys.POSITIONS].dtype
        embedding = time_embedding(t, self.schedule.timesteps, self.time_features, dtype)
        return torch.cat([atom_features.to(dtype), embedding[batch_index(batch)]], dim=-1)

    # --- the energy model ---------------------------------------------------------------------

    def forward(self, batch, forces: bool = True, node_features: bool = False) -> dict[str, torch.Tensor]:
        """The energy model at time 0: ``{"energy": [n_molecules] eV, "forces": [n_atoms, 3] eV/Å}``.

        Args:
            batch: structures with their molecular graph (see :meth:`prepare`).
            forces: also compute the forces (as :class:`~zoo.models.ForceFieldModel`).
            node_features: also return the backbone's node features.
        """
        prepared = self.prepare(batch)
        t = torch.zeros(n_structures(batch), dtype=torch.long, device=prepared[keys.POSITIONS].device)
        conditioning = self._conditioning(prepared, t)
        if not forces:
            return self._energy(prepared, conditioning, node_features)
        return super().forward(prepared, conditioning, node_features)

    def frozen_energy(self, batch, positions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Energy and forces at ``positions`` (Å) from the energy model as a fixed function: no
        graph to the parameters nor to ``positions`` (see the module docs)."""
        moved = copy.copy(batch)
        moved[keys.POSITIONS] = positions.detach()
        with torch.no_grad():
            return self(moved)

    # --- the structure generator --------------------------------------------------------------

    @property
    def default_mode(self) -> str:
        """The mode of a generation that names none: ``"refine"`` for a refiner (``max_noise_time`` < 1), else DDIM."""
        return "ddim" if self.max_noise_time >= 1 else "refine"

    @property
    def largest_time(self) -> int:
        """The largest integer noise time the generator learns (``max_noise_time`` T, at least 1)."""
        return max(1, round(self.max_noise_time * self.schedule.timesteps))

    def normalise(self, batch, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Centred positions (Å, default the batch's) in the diffusion's units, x = R / s."""
        positions = batch[keys.POSITIONS] if positions is None else positions
        return centre(positions, batch_index(batch), n_structures(batch)) / self.position_scale

    def noise(self, batch, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None) -> Noised:
        """Noise normalised positions ``x0`` to integer times ``t`` [n_molecules] with centred noise."""
        molecule = batch_index(batch)
        epsilon = centred_noise(x0, molecule, n_structures(batch), generator)
        alpha, sigma = (a.to(x0.dtype)[molecule].unsqueeze(-1) for a in self.schedule(t))
        return Noised(alpha * x0 + sigma * epsilon, t, epsilon, alpha * epsilon - sigma * x0)

    def predict_v(self, prepared, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The head's prediction of v [n_atoms, 3] (centred) at normalised positions ``x_t`` and
        times ``t`` [n_molecules]; ``prepared`` comes from :meth:`prepare`."""
        noisy = copy.copy(prepared)
        noisy[keys.POSITIONS] = x_t * self.position_scale
        features = self.backbone(noisy, self._conditioning(prepared, t)).node_features
        return centre(self.noise_head(features), batch_index(prepared), n_structures(prepared))

    def denoise(self, prepared, x_t: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""One-step predictions :math:`(\hat x_0, \hat\epsilon)` in normalised units."""
        v = self.predict_v(prepared, x_t, t)
        alpha, sigma = (a.to(x_t.dtype)[batch_index(prepared)].unsqueeze(-1) for a in self.schedule(t))
        return alpha * x_t - sigma * v, sigma * x_t + alpha * v

    def denoising_loss(self, batch, t: torch.Tensor | None = None,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean squared error of the predicted v on ``batch``'s structures noised at times ``t``
        (default: uniform per molecule in 1..``max_noise_time`` T)."""
        prepared = self.prepare(batch)
        x0 = self.normalise(batch)
        if t is None:
            t = random_times(n_structures(batch), 1, self.largest_time, x0.device, generator)
        noised = self.noise(prepared, x0, t, generator)
        return torch.nn.functional.mse_loss(self.predict_v(prepared, noised.x_t, t), noised.v)

    def one_shot(self, batch, positions: torch.Tensor, t: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        r"""Noise ``positions`` (Å) to times ``t`` [n_molecules] and denoise in one step:
        :math:`\hat R = s\,\hat x_0` (Å, centred), differentiable in the generator's parameters."""
        prepared = self.prepare(batch)
        noised = self.noise(prepared, self.normalise(prepared, positions), t, generator)
        x0, _ = self.denoise(prepared, noised.x_t, t)
        return x0 * self.position_scale

    def sample_ddim(self, batch, steps: int, generator: torch.Generator | None = None,
                    positions: torch.Tensor | None = None, start: int | None = None) -> torch.Tensor:
        """Deterministic DDIM sampling (η = 0) in ``steps`` steps, positions in Å (centred).

        From pure noise at T by default; with ``positions`` (Å) and ``start`` (an integer time),
        from those positions noised to ``start``. With ``steps == start`` (T by default) every
        time is visited: the deterministic reverse process of the schedule.
        """
        prepared = self.prepare(batch)
        molecule, n_molecules = batch_index(prepared), n_structures(prepared)
        reference = prepared[keys.POSITIONS]
        times = self.schedule.times(steps, start)
        t = torch.full((n_molecules,), times[0], dtype=torch.long, device=reference.device)
        if times[0] > self.largest_time:
            raise ValueError(f"this generator learned noise times up to {self.largest_time} (max_noise_time="
                             f"{self.max_noise_time:g} of T={self.schedule.timesteps}), not {times[0]}: start "
                             "from a structure (mode 'refine' or 'one_shot') at a time no larger")
        if positions is None:
            if times[0] != self.schedule.timesteps:
                raise ValueError("sampling from pure noise starts at T; give positions to start earlier")
            x = centred_noise(reference, molecule, n_molecules, generator)
        else:
            x = self.noise(prepared, self.normalise(prepared, positions), t, generator).x_t
        for now, then in itertools.pairwise(times):
            t = torch.full((n_molecules,), now, dtype=torch.long, device=x.device)
            s = torch.full_like(t, then)
            v = self.predict_v(prepared, x, t)
            x = self.schedule.ddim_step(x, v, t[molecule].unsqueeze(-1), s[molecule].unsqueeze(-1))
        return x * self.position_scale

    def generate_positions(self, batch, mode: str | None = None, steps: int = 50, start: float | None = None,
                           seed: int | None = None) -> torch.Tensor:
        """Generated positions (Å, [n_atoms, 3], centred) for the molecular graphs of ``batch``.

        Args:
            batch: structures with molecular graphs; their positions are not used. The modes that
                start from an RDKit structure need each structure's ``smiles`` (mapped, in the
                atoms' order).
            mode: ``"ddim"``: DDIM sampling from pure noise in ``steps`` steps; ``"one_shot"``: an RDKit
                ETKDG conformer of each molecule, noised to ``start`` and denoised in one step (one network
                evaluation); ``"refine"``: an MMFF94-relaxed ETKDG conformer, noised to ``start`` and brought
                back by DDIM in ``steps`` steps (at most one per integer time); consecutive structures of one
                molecule start from different conformers (:func:`~zoo.models._molecules.diverse_conformers`).
                Default: :attr:`default_mode`.
            steps: DDIM steps.
            start: starting time of ``one_shot`` and ``refine`` as a fraction of T (default
                ``one_shot_start``).
            seed: seeds the noise (and the conformers), for reproducible structures.
        """
        mode = self.default_mode if mode is None else mode
        if mode not in MODES:
            raise ValueError(f"unknown generation mode {mode!r}; choose one of {MODES}")
        reference = batch[keys.POSITIONS]
        generator = None
        if seed is not None:
            generator = torch.Generator(device=reference.device).manual_seed(int(seed))
        if mode == "ddim":
            return self.sample_ddim(batch, steps, generator)
        fraction = self.one_shot_start if start is None else float(start)
        if not 0 < fraction <= 1:
            raise ValueError(f"the starting time is a fraction of T in (0, 1], got {fraction}")
        time = max(1, round(fraction * self.schedule.timesteps))
        smiles = batch[keys.SMILES]
        smiles = [smiles] if isinstance(smiles, str) else list(smiles)
        conformer_seed = int(seed) if seed is not None else int(torch.randint(2**31 - 1, ()))
        if mode == "refine":
            initial = np.concatenate(refinement_starts(smiles, conformer_seed))
        else:
            initial = np.concatenate([etkdg_conformer(s, conformer_seed + i) for i, s in enumerate(smiles)])
        initial = torch.as_tensor(initial, dtype=reference.dtype, device=reference.device)
        if mode == "refine":
            return self.sample_ddim(batch, min(steps, time), generator, positions=initial, start=time)
        if time > self.largest_time:
            raise ValueError(f"this generator learned noise times up to {self.largest_time} of "
                             f"T={self.schedule.timesteps} (max_noise_time={self.max_noise_time:g}); start no later")
        t = torch.full((n_structures(batch),), time, dtype=torch.long, device=reference.device)
        return self.one_shot(batch, initial, t, generator)

    def extra_repr(self) -> str:
        return (f"position_scale={self.position_scale} Å, time_features={self.time_features}, "
                f"max_graph_distance={self.max_graph_distance}, max_atoms={self.max_atoms}, "
                f"max_noise_time={self.max_noise_time:g}")
