"""Conservative force fields: an energy head on an equivariant backbone, forces as -dE/dr."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

from zoo.data import Statistics, keys
from zoo.models._inference import units_of
from zoo.models.property import PropertyModel

#: Output key of the backbone's node features, returned on request (DeNS heads read them).
NODE_FEATURES = "node_features"


class ForceFieldModel(PropertyModel):
    r"""Energy :math:`E = \sum_i \left(s\,\mathrm{MLP}(h_i) + \mu + E^{\mathrm{ref}}_{Z_i}\right)` and
    forces :math:`F = -\partial E / \partial r`.

    The energy is :class:`PropertyModel`'s sum-pooled readout of the backbone's invariant
    features, with its shift ``mu`` (mean energy per atom), scale ``s`` (:attr:`rescale`) and
    per-element reference energies (:attr:`reference_energies`) set by :meth:`set_statistics`. Forces are the exact negative gradient
    of that energy, so the force field is conservative (energy is conserved in NVE MD). Works in
    float32 and float64 (``model.double()``; the data must match).

    Gradients are taken with autograd whatever the calling context: under ``torch.no_grad`` (an
    ASE calculator) and under ``torch.inference_mode`` (Lightning's validation and test loops),
    where the inputs are copied out of inference mode first. The graph of the forces is kept
    (for a force loss, or Hessians) only when the caller has gradients enabled.

    :meth:`predict` (``{"energy": float eV, "forces": [n_atoms, 3] eV/Å}`` per structure) and the
    ASE calculator (:meth:`as_calculator`) warn about structures outside ``domain``, the training
    domain; the forward pass never checks, as training (DeNS) corrupts structures on purpose.

    **Multi-fidelity** (``levels``): one backbone, one energy head per level of theory, each with
    its own shift and reference energies, so that xTB and DFT labels train together without
    sharing an energy zero (as MACE's multi-head fine-tuning). A structure's
    :data:`~zoo.data.keys.FIDELITY` (set by :class:`~zoo.data.AtomicDataModule` with ``levels``)
    picks its head; a structure without one, as every structure a user predicts, gets
    :attr:`level` (the primary level, ``levels[0]``, unless set otherwise).

    Args:
        backbone: an equivariant backbone (``irreps_out``, ``forward(data, extra_node_features)``),
            e.g. :class:`~zoo.models.EquivariantBackbone`.
        hidden: width of the energy readout MLP.
        forces: compute forces (otherwise only energies, e.g. to fit energies alone).
        levels: the levels of theory of multi-fidelity training, primary first, as the data
            module names them; ``None``: one level.
    """

    def __init__(self, backbone: torch.nn.Module, hidden: int = 64, forces: bool = True,
                 levels: Sequence[str] | None = None):
        self.levels = list(levels or [])
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels must be distinct, got {self.levels}")
        heads = [_head(level) for level in self.levels] or [keys.ENERGY]
        super().__init__(backbone, heads, pooling="sum", hidden=hidden)
        self.forces = forces
        self._level = 0

    @property
    def level(self) -> str | None:
        """The level of theory of the energies predicted for structures without a
        :data:`~zoo.data.keys.FIDELITY` (``None`` for a single-level model). Settable::

            model.level = "gfn2-xtb"     # predict and run MD at that level
        """
        return self.levels[self._level] if self.levels else None

    @level.setter
    def level(self, level: str) -> None:
        if level not in self.levels:
            raise ValueError(f"this model predicts the levels {self.levels or '(one, unnamed)'}, not {level!r}")
        self._level = self.levels.index(level)

    @staticmethod
    def checkpoint_targets(init_args: Mapping) -> list[str]:
        """The energy heads, in row order, of a force field built with ``init_args`` (a checkpoint's config)."""
        return [_head(level) for level in init_args.get("levels") or []] or [keys.ENERGY]

    def start_target(self, target: str, checkpoint_targets: Sequence[str]) -> str | None:
        """A level of theory the checkpoint has keeps its head; another one starts from the
        checkpoint's primary level (its first head), as MACE's multi-head fine-tuning starts a new
        head: every head predicts an energy, and the levels differ far less than a fresh layer does."""
        return target if target in checkpoint_targets else checkpoint_targets[0]

    @property
    def prediction_units(self) -> dict[str, str]:
        """``{"energy": "eV", "forces": "eV/Å"}`` (the energy alone without ``forces``)."""
        return units_of([keys.ENERGY, keys.FORCES] if self.forces else [keys.ENERGY])

    def set_statistics(self, statistics: Statistics | Mapping[str, Mapping]) -> None:
        """Shift and reference energies from the energy's statistics, as :class:`PropertyModel`.

        The scale is the forces' standard deviation when the data module standardises
        ``forces`` (NequIP's choice): energy differences within one molecule are far smaller than
        the spread of per-atom energies across molecules, and the forces are what is fitted.
        """
        statistics = Statistics.of(statistics)
        forces_std = statistics.std(keys.FORCES)
        if self.levels:
            # every head: the energy's shift (pooled over levels) and its own level's references
            energy = {k: v for k, v in statistics.get(keys.ENERGY, {}).items() if k in ("mean", "std", "per_atom")}
            statistics = Statistics({_head(level): {**energy, "reference_energies": statistics.reference_energies(
                keys.ENERGY, level)} for level in self.levels})
        super().set_statistics(statistics)
        if forces_std is not None:
            self.rescale.scale[:] = forces_std

    def forward(
        self, batch, extra_node_features: torch.Tensor | None = None, node_features: bool = False
    ) -> dict[str, torch.Tensor]:
        """``{"energy": [n_structures] eV, "forces": [n_atoms, 3] eV/Å}``.

        Args:
            batch: an :class:`~zoo.data.AtomicData` or a batch of them.
            extra_node_features: extra equivariant node inputs for the backbone (DeNS's encoded
                forces); the forces are still -dE/dr at fixed extra inputs.
            node_features: also return the backbone's node features under ``"node_features"``.
        """
        if not self.forces:
            return self._energy(batch, extra_node_features, node_features)
        keep_graph = torch.is_grad_enabled()
        if torch.is_inference_mode_enabled():
            # autograd does not run in inference mode, and tensors made in it cannot be saved for
            # backward: leave it, with copies of the inputs
            with torch.inference_mode(False), torch.enable_grad():
                extra = None if extra_node_features is None else extra_node_features.clone()
                return self._energy_and_forces(batch.clone(), extra, node_features, keep_graph=False)
        with torch.enable_grad():
            return self._energy_and_forces(copy.copy(batch), extra_node_features, node_features, keep_graph)

    def energy(self, batch) -> dict[str, torch.Tensor]:
        """``{"energy": [n_structures] eV}`` at :attr:`level`, without forces: what
        :func:`~zoo.models.export_model` traces before it differentiates the program itself."""
        return self._energy(batch, None, node_features=False)

    def _energy(self, batch, extra, node_features: bool) -> dict[str, torch.Tensor]:
        features = self.backbone(batch) if extra is None else self.backbone(batch, extra)
        out = self.pool(batch, features.node_features)
        if self.levels:
            # every head is a column of one readout, so all levels cost one pass; keep each
            # structure's own
            energies = torch.stack([out.pop(_head(level)) for level in self.levels], dim=-1)
            fidelity = batch[keys.FIDELITY].reshape(-1) if keys.FIDELITY in batch else \
                torch.full(energies.shape[:1], self._level, dtype=torch.long, device=energies.device)
            out[keys.ENERGY] = energies.gather(-1, fidelity.unsqueeze(-1)).squeeze(-1)
        if node_features:
            out[NODE_FEATURES] = features.node_features
        return out

    def _energy_and_forces(self, batch, extra, node_features: bool, keep_graph: bool) -> dict[str, torch.Tensor]:
        # `batch` is a shallow copy: the caller's positions are not switched to requires_grad
        pos = batch[keys.POSITIONS]
        if not pos.requires_grad:
            pos = batch[keys.POSITIONS] = pos.detach().requires_grad_(True)
        out = self._energy(batch, extra, node_features)
        (gradient,) = torch.autograd.grad(out[keys.ENERGY].sum(), pos, create_graph=keep_graph)
        out[keys.FORCES] = -gradient
        if not keep_graph:
            out = {k: v.detach() for k, v in out.items()}
        return out


def _head(level: str) -> str:
    """The name of the energy head of ``level`` among a multi-fidelity model's targets."""
    return f"{keys.ENERGY}[{level}]"
