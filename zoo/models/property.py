"""Invariant molecular properties from the shared backbone: scalar readout, sum or mean pooling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch_geometric.utils import scatter

from zoo.data import batch_index, keys, n_structures
from zoo.models._domain import TrainingDomain
from zoo.models._inference import Predictor, units_of
from zoo.models._rescale import RescaledModel


class PropertyModel(RescaledModel, Predictor):
    """Predicts per-structure scalar targets from a backbone's invariant (0e) node features.

    Each target pools ``rescale(MLP(scalars)) + reference_energies(Z)`` over the atoms, by sum
    (extensive targets such as energies) or mean (intensive ones such as orbital energies). The
    per-atom shift and scale (:class:`~zoo.models.ScaleShift`) start at 0 and 1 and the per-element
    references (:class:`~zoo.models.ReferenceEnergies`) at 0; :meth:`set_statistics` sets them
    from training-set statistics. ``domain`` (a
    :class:`~zoo.models.TrainingDomain` within the backbone's cutoff) records what the training
    set held; the task fits it.

    :meth:`predict` answers ASE structures with ``{target: float}`` in the targets' units
    (:attr:`prediction_units`; eV for energies such as QM9's ``U0``), and a model of an energy
    (``energy`` or ``U0``) is an ASE calculator (:meth:`as_calculator`, energies only)::

        model.predict(atoms)                 # {"U0": U0 of atoms in eV}

    Args:
        backbone: a module with ``irreps_out``, ``element_index``, ``cutoff`` and
            ``forward(batch).node_features``, e.g. :class:`~zoo.models.EquivariantBackbone`.
        targets: canonical keys to predict.
        pooling: ``"sum"`` or ``"mean"`` per target (a dict), or one value for all.
        hidden: width of the readout MLP.
    """

    def __init__(
        self,
        backbone: torch.nn.Module,
        targets: Sequence[str],
        pooling: str | Mapping[str, str] = "sum",
        hidden: int = 64,
    ):
        if not targets:
            raise ValueError("PropertyModel needs at least one target")
        super().__init__(targets)
        self.backbone = backbone
        self.domain = TrainingDomain(backbone.element_index.atomic_numbers, backbone.cutoff)
        pooling = {t: pooling for t in self.targets} if isinstance(pooling, str) else dict(pooling)
        bad = {t: p for t, p in pooling.items() if p not in ("sum", "mean")}
        if bad or set(pooling) != set(self.targets):
            raise ValueError(f"pooling must be 'sum' or 'mean' for each of {self.targets}, got {pooling}")
        self.pooling = pooling
        irreps = backbone.irreps_out
        self._scalar_slices = [irreps.slices()[i] for i, (_, ir) in enumerate(irreps) if ir.l == 0 and ir.p == 1]
        n_scalars = sum(s.stop - s.start for s in self._scalar_slices)
        if n_scalars == 0:
            raise ValueError(f"backbone irreps {irreps} have no even scalars (0e) to read out")
        self.readout = torch.nn.Sequential(
            torch.nn.Linear(n_scalars, hidden), torch.nn.SiLU(), torch.nn.Linear(hidden, len(self.targets))
        )

    #: the tensors (names within the model) with one row per target: the readout's last layer, the
    #: targets' scale and shift and their per-element references; a fine-tune takes them row by
    #: row from the checkpoint (:class:`zoo.registry.RowsPerTarget`)
    per_target_tensors = ("readout.2.weight", "readout.2.bias", "rescale.shift", "rescale.scale",
                          "reference_energies.atomref")

    @staticmethod
    def checkpoint_targets(init_args: Mapping) -> list[str]:
        """The targets, in row order, of a model built with ``init_args`` (a checkpoint's config)."""
        return list(init_args.get("targets") or [])

    def start_target(self, target: str, checkpoint_targets: Sequence[str]) -> str | None:
        """The checkpoint's target whose rows ``target`` starts from in a fine-tune: the same one, or
        none (a new property starts at its initialisation)."""
        return target if target in checkpoint_targets else None

    @property
    def prediction_units(self) -> dict[str, str]:
        """``{target: unit}`` of :meth:`predict` (:data:`zoo.models._inference.UNITS`)."""
        return units_of(self.targets)

    def reset_parameters(self) -> None:
        for layer in self.readout:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def forward(self, batch, extra_node_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Predictions ``{target: [n_structures]}``; ``extra_node_features`` go to the backbone
        (see :class:`~zoo.models.EquivariantBackbone`), for backbones built to take them."""
        if extra_node_features is None:
            features = self.backbone(batch).node_features
        else:
            features = self.backbone(batch, extra_node_features).node_features
        return self.pool(batch, features)

    def pool(self, batch, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The targets from the backbone's node features [n_atoms, irreps_out.dim] of ``batch``."""
        scalars = torch.cat([features[:, s] for s in self._scalar_slices], dim=-1)
        # mean and std are per atom for sum-pooled targets (zoo.data.AtomicDataModule's statistics)
        atomwise = self.rescale(self.readout(scalars)) + self.reference_energies(batch[keys.ATOMIC_NUMBERS])
        index, size = batch_index(batch), n_structures(batch)
        return {
            t: scatter(atomwise[:, i], index, dim=0, dim_size=size, reduce=self.pooling[t])
            for i, t in enumerate(self.targets)
        }
