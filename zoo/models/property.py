"""Invariant molecular properties from the shared backbone: scalar readout, sum or mean pooling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch_geometric.utils import scatter

from zoo.data import keys
from zoo.data.elements import MAX_ATOMIC_NUMBER
from zoo.models._domain import TrainingDomain


class PropertyModel(torch.nn.Module):
    """Predicts per-structure scalar targets from a backbone's invariant (0e) node features.

    Each target is ``shift + scale * pool(MLP(scalars))``, pooled by sum (extensive targets such
    as energies) or mean (intensive ones such as orbital energies). ``shift`` and ``scale`` start
    at 0 and 1; :meth:`set_statistics` sets them from training-set statistics. ``domain`` (a
    :class:`~zoo.models.TrainingDomain` within the backbone's cutoff) records what the training
    set held; the task fits it.

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
        super().__init__()
        if not targets:
            raise ValueError("PropertyModel needs at least one target")
        self.backbone = backbone
        self.domain = TrainingDomain(backbone.element_index.atomic_numbers, backbone.cutoff)
        self.targets = list(targets)
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
        self.register_buffer("shift", torch.zeros(len(self.targets)))
        self.register_buffer("scale", torch.ones(len(self.targets)))
        # per-element reference values [n_targets, Z_max + 1], added to atomwise contributions
        self.register_buffer("atomref", torch.zeros(len(self.targets), MAX_ATOMIC_NUMBER + 1))

    def reset_parameters(self) -> None:
        for layer in self.readout:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()

    def set_statistics(self, statistics: Mapping[str, Mapping]) -> None:
        """Set shift, scale and reference values from a data module's ``statistics``.

        ``{target: {"mean": m, "std": s, "reference_energies": {Z: value}}}``, with mean and std
        per atom for sum-pooled targets (see :class:`zoo.data.AtomicDataModule`).
        """
        for i, target in enumerate(self.targets):
            stats = statistics.get(target, {})
            self.shift[i] = float(stats.get("mean", 0.0))
            self.scale[i] = float(stats.get("std", 1.0))
            self.atomref[i].zero_()
            for z, value in stats.get("reference_energies", {}).items():
                self.atomref[i, int(z)] = float(value)

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
        atomwise = self.readout(scalars) * self.scale + self.shift + self.atomref[:, batch[keys.ATOMIC_NUMBERS]].T
        index = batch[keys.BATCH] if keys.BATCH in batch and batch[keys.BATCH] is not None else \
            torch.zeros(atomwise.shape[0], dtype=torch.long, device=atomwise.device)
        n_structures = int(batch[keys.N_ATOMS].numel()) if keys.N_ATOMS in batch else int(index.max()) + 1
        return {
            t: scatter(atomwise[:, i], index, dim=0, dim_size=n_structures, reduce=self.pooling[t])
            for i, t in enumerate(self.targets)
        }
