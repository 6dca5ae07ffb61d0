"""The DeNS training recipe as an auxiliary loss any force-field task can switch on."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from zoo.data import Statistics, batch_index, keys, n_structures
from zoo.dens._corruption import Corruption, check_recipe, corrupt
from zoo.dens._encoding import ForceEncoding
from zoo.dens._head import DenoisingHead
from zoo.losses import AuxiliaryLoss, Forward, Progress, Step, check_loss_name, masked_loss
from zoo.models.force_field import NODE_FEATURES


@dataclass(kw_only=True)
class DenoisingForward(Forward):
    """The forward pass of a DeNS training step: the model's predictions on the corrupted
    structures, with the uncorrupted ``atoms``, and what the denoising loss compares.

    Attributes:
        noise: [n_atoms, 3] the head's prediction of noise / sigma.
        corruption: the noise drawn for the batch.
    """

    noise: torch.Tensor
    corruption: Corruption


class DeNS(AuxiliaryLoss):
    """Denoising non-equilibrium structures (Liao et al., TMLR 2024) as an auxiliary loss.

    On a training batch, :meth:`predict` draws noise with :meth:`corrupt` (the structures and atoms
    whose positions are noised) and runs the model on the corrupted structures with the *original* forces
    of the corrupted atoms encoded into the backbone's extra node inputs (:class:`ForceEncoding`);
    a :class:`DenoisingHead` predicts noise / sigma for those atoms. The task trains the energy on
    the original structure's energy and the forces only on uncorrupted atoms (the forward pass's
    ``atoms``; with ``supervise_corrupted=False``, neither on a corrupted structure), and adds
    ``weight(progress) * denoising loss`` (:meth:`forward`). Knowing the forces makes the target
    well defined: many originals (with different forces) lead to the same corrupted structure.

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
        bounded_encoding: bound each corrupted atom's force encoding to a root mean square below
            one (:class:`ForceEncoding`'s ``bounded``; not in the paper). On by default: with a
            many-body backbone the unbounded encoding let one of two ethanol seeds diverge, and
            the bounded one trained all three (docs/force_field.md, the DeNS study at convergence).
        head_hidden: width of the denoising head.
        loss: a loss name of :data:`zoo.losses.LOSSES` for the noise.
        supervise_corrupted: train a corrupted structure's energy and its uncorrupted atoms'
            forces on the original structure's labels (the paper's recipe). ``False``: a
            corrupted structure trains the denoising loss alone. For a model whose forces are
            -dE/dR those targets are not the corrupted structure's: on ethanol at sigma 0.05 Å
            they are 200 meV and 360 meV/Å off under PBE, some 100 times the label error
            (``benchmarks/dens/target_shift.py``).
        augment: denoise corrupted copies beside the uncorrupted batch instead of in its place:
            every structure trains its labels as without DeNS, and a second forward pass on the
            batch with the drawn corruption trains the denoising loss alone (so
            ``supervise_corrupted`` must be ``False``). No structure gives up its labels; a step
            costs a second forward pass, on the whole batch, whose denoised structures are those
            ``probability`` chooses (1.0: every structure's).
    """

    name = "dens"

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
        bounded_encoding: bool = True,
        head_hidden: int = 16,
        loss: str = "mse",
        supervise_corrupted: bool = True,
        augment: bool = False,
    ):
        if loss_weight < 0 or final_loss_weight < 0:
            raise ValueError(f"DeNS loss weights must be >= 0, got {loss_weight} -> {final_loss_weight}")
        super().__init__(loss_weight)
        check_loss_name(loss, "DeNS")
        self.probability, self.corrupt_ratio, self.per_batch = probability, corrupt_ratio, per_batch
        self.sigma = sigma if isinstance(sigma, (int, float)) else list(sigma)
        self.final_loss_weight = float(final_loss_weight)
        self.encode_forces, self.l_max, self.head_hidden, self.loss = encode_forces, l_max, head_hidden, loss
        self.bounded_encoding = bool(bounded_encoding)
        if augment and supervise_corrupted:
            raise ValueError("DeNS(augment=True) trains the labels on the uncorrupted batch and the corrupted copies "
                             "on the denoising loss alone: set supervise_corrupted=False as well")
        self.supervise_corrupted, self.augment = supervise_corrupted, augment
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
        self.encoding = ForceEncoding(irreps_extra, self.l_max, bounded=self.bounded_encoding)
        self.head = DenoisingHead(backbone.irreps_out, self.head_hidden)
        dtype = next(model.parameters()).dtype
        return self.to(dtype)

    def set_statistics(self, statistics: Statistics) -> None:
        """The force encoding's scale from the training set's ``forces`` standard deviation."""
        std = statistics.std(keys.FORCES)
        if std:
            self._built().encoding.set_statistics(std)

    def weight(self, progress: Progress) -> float:
        """The denoising loss weight, linear from ``loss_weight`` at the start of training to
        ``final_loss_weight`` at its end (``progress.fraction`` 0 and 1)."""
        fraction = min(max(float(progress.fraction), 0.0), 1.0)
        return self.loss_weight + (self.final_loss_weight - self.loss_weight) * fraction

    def corrupt(self, batch, generator: torch.Generator | None = None) -> Corruption:
        """Draw this recipe's noise for ``batch`` (see :func:`zoo.dens.corrupt`)."""
        return corrupt(batch, self.probability, self.corrupt_ratio, self.sigma, self.per_batch, generator)

    def predict(self, model: torch.nn.Module, batch, corruption: Corruption | None = None) -> DenoisingForward:
        """The forward pass of a training step on ``batch`` corrupted by ``corruption`` (default:
        one drawn by :meth:`corrupt`).

        The predictions' energy and forces are those of the corrupted structures (with encoded
        forces); the outputs compare them with the original labels, the forces on the uncorrupted
        atoms only (with ``supervise_corrupted=False``, on structures without a corrupted atom only).
        With ``augment``, they are those of the uncorrupted batch, every label trained, and the
        corrupted structures make the noise prediction in a second pass.
        """
        self._built()
        corruption = self.corrupt(batch) if corruption is None else corruption
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
        if self.augment:
            return DenoisingForward(dict(model(batch)), noise=noise, corruption=corruption)
        atoms, structures = ~corruption.mask, None
        if not self.supervise_corrupted:
            index = batch_index(batch)
            structures = torch.ones(n_structures(batch), dtype=torch.bool, device=index.device)
            structures[index[corruption.mask]] = False
            atoms = structures[index]
        return DenoisingForward(predictions, atoms=atoms, structures=structures, noise=noise, corruption=corruption)

    def forward(self, step: Step) -> torch.Tensor:
        """The denoising loss of the corrupted atoms, from the forward pass of :meth:`predict`;
        logs the weight of this step as ``train/dens_weight``."""
        forward = step.forward
        if not isinstance(forward, DenoisingForward):
            raise TypeError("the DeNS loss reads the forward pass of DeNS.predict; the task made another one")
        step.log(f"{step.stage}/dens_weight", self.weight(step.progress), batch_size=n_structures(step.batch))
        corruption = forward.corruption
        return masked_loss(self.loss, forward.noise, corruption.target, corruption.mask)

    def _built(self) -> DeNS:
        if self.encoding is None:
            raise RuntimeError("call DeNS.attach(model) first (ForceFieldTask does it when built)")
        return self

    def extra_repr(self) -> str:
        return (f"probability={self.probability}, corrupt_ratio={self.corrupt_ratio}, sigma={self.sigma}, "
                f"per_batch={self.per_batch}, weight {self.loss_weight} -> {self.final_loss_weight}, "
                f"encode_forces={self.encode_forces}, bounded_encoding={self.bounded_encoding}, supervise_corrupted={self.supervise_corrupted}, augment={self.augment}")

