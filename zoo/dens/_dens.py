"""The DeNS training recipe as a module any force-field task can switch on."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch

from zoo.data import keys
from zoo.dens._corruption import Corruption, check_recipe, corrupt
from zoo.dens._encoding import ForceEncoding
from zoo.dens._head import DenoisingHead
from zoo.models.force_field import NODE_FEATURES


class DeNS(torch.nn.Module):
    """Denoising non-equilibrium structures (Liao et al., TMLR 2024) as an auxiliary training task.

    On a training batch, :meth:`corrupt` chooses structures and atoms and noises their positions;
    :meth:`forward` runs the model on the corrupted structures with the *original* forces of the
    corrupted atoms encoded into the backbone's extra node inputs (:class:`ForceEncoding`), and
    a :class:`DenoisingHead` predicts noise / sigma for those atoms. The task trains the energy on
    the original structure's energy and the forces only on uncorrupted atoms, and adds
    ``weight(progress) * denoising loss``. Knowing the forces makes the target well defined: many
    originals (with different forces) lead to the same corrupted structure.

    Inference never uses any of this: without extra inputs the backbone sees zeros, exactly what
    uncorrupted atoms see in training.

    It works with any model ``model(batch, extra_node_features, node_features=True)`` that returns
    ``"node_features"`` (:class:`~zoo.models.ForceFieldModel`) on a backbone exposing
    ``irreps_out`` and ``irreps_extra`` (its ``extra_node_irreps``, e.g. ``"1x0e+1x1o+1x2e"``).

    Defaults are the MD17 recipe; OC20's is ``per_batch=True, probability=0.5, sigma=0.1``.

    Args:
        probability: probability of denoising a structure (or, with ``per_batch``, a batch).
        corrupt_ratio: probability of corrupting each atom of a denoised structure.
        sigma: noise standard deviation (Å), or several, one drawn per structure.
        per_batch: choose whole batches for denoising instead of single structures.
        loss_weight: weight of the denoising loss at the start of training.
        final_loss_weight: its weight at the end; it changes linearly in between.
        encode_forces: encode the original forces (off only for ablations: the target is then
            ambiguous).
        l_max: degree of the force encoding's spherical harmonics.
        head_hidden: width of the denoising head.
        loss: a loss name of :data:`zoo.tasks.LOSSES` for the noise.
    """

    def __init__(
        self,
        probability: float = 0.25,
        corrupt_ratio: float = 0.25,
        sigma: float | Sequence[float] = 0.05,
        per_batch: bool = False,
        loss_weight: float = 5.0,
        final_loss_weight: float = 0.0,
        encode_forces: bool = True,
        l_max: int = 2,
        head_hidden: int = 16,
        loss: str = "mse",
    ):
        super().__init__()
        # here, not at the top: zoo.tasks imports zoo.dens for ForceFieldTask
        from zoo.tasks._outputs import LOSSES

        if loss not in LOSSES:
            raise ValueError(f"unknown DeNS loss {loss!r}; choose one of {sorted(LOSSES)}")
        if loss_weight < 0 or final_loss_weight < 0:
            raise ValueError(f"DeNS loss weights must be >= 0, got {loss_weight} -> {final_loss_weight}")
        self.probability, self.corrupt_ratio, self.per_batch = probability, corrupt_ratio, per_batch
        self.sigma = sigma if isinstance(sigma, (int, float)) else list(sigma)
        self.loss_weight, self.final_loss_weight = float(loss_weight), float(final_loss_weight)
        self.encode_forces, self.l_max, self.head_hidden, self.loss = encode_forces, l_max, head_hidden, loss
        self.loss_function = LOSSES[loss]
        check_recipe(probability, corrupt_ratio, self.sigma)  # fail when built, not mid-training
        self.encoding: ForceEncoding | None = None
        self.head: DenoisingHead | None = None

    def attach(self, model: torch.nn.Module) -> DeNS:
        """Build the force encoding and the denoising head for ``model``'s backbone; returns self.

        Called by the task when it is built, so that the parameters exist before the optimizer
        and before a checkpoint is loaded.
        """
        backbone = getattr(model, "backbone", None)
        irreps_extra = getattr(backbone, "irreps_extra", None)
        if irreps_extra is None:
            raise ValueError(
                "DeNS encodes forces into the backbone's extra node inputs, but this model's backbone has none: "
                "build it with extra_node_irreps, e.g. EquivariantBackbone(..., extra_node_irreps='1x0e+1x1o+1x2e')"
            )
        self.encoding = ForceEncoding(irreps_extra, self.l_max)
        self.head = DenoisingHead(backbone.irreps_out, self.head_hidden)
        dtype = next(model.parameters()).dtype
        return self.to(dtype)

    def set_statistics(self, statistics: Mapping[str, Mapping]) -> None:
        """The force encoding's scale from the data module's ``forces`` standard deviation."""
        std = statistics.get(keys.FORCES, {}).get("std")
        if std:
            self._built().encoding.set_statistics(std)

    def weight(self, progress: float) -> float:
        """The denoising loss weight at ``progress`` (0 at the start of training, 1 at its end)."""
        progress = min(max(float(progress), 0.0), 1.0)
        return self.loss_weight + (self.final_loss_weight - self.loss_weight) * progress

    def corrupt(self, batch, generator: torch.Generator | None = None) -> Corruption:
        """Draw this recipe's noise for ``batch`` (see :func:`zoo.dens.corrupt`)."""
        return corrupt(batch, self.probability, self.corrupt_ratio, self.sigma, self.per_batch, generator)

    def forward(self, model: torch.nn.Module, batch, corruption: Corruption) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Predictions on the corrupted batch and the denoising loss of its corrupted atoms.

        The predictions' energy and forces are those of the corrupted structures (with encoded
        forces); the task compares them with the original labels as the recipe says.
        """
        self._built()
        corrupted = copy.copy(batch)
        corrupted[keys.POSITIONS] = corruption.positions
        for key in (keys.EDGE_INDEX, keys.EDGE_CELL_SHIFT):  # neighbours move: recompute the graph
            if key in corrupted:
                del corrupted[key]
        extra = None
        if self.encode_forces:
            extra = self.encoding(batch[keys.FORCES], corruption.mask)
        predictions = dict(model(corrupted, extra, node_features=True))
        noise = self.head(predictions.pop(NODE_FEATURES))
        mask = corruption.mask
        if mask.any():
            loss = self.loss_function(noise[mask], corruption.target[mask])
        else:  # keeps the head in the graph (DDP expects every parameter to get a gradient)
            loss = noise.sum() * 0.0
        return predictions, loss

    def _built(self) -> DeNS:
        if self.encoding is None:
            raise RuntimeError("call DeNS.attach(model) first (ForceFieldTask does it when built)")
        return self

    def extra_repr(self) -> str:
        return (f"probability={self.probability}, corrupt_ratio={self.corrupt_ratio}, sigma={self.sigma}, "
                f"per_batch={self.per_batch}, weight {self.loss_weight} -> {self.final_loss_weight}, "
                f"encode_forces={self.encode_forces}")

