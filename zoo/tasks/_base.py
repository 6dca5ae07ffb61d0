"""The LightningModule every family's task builds on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from zoo.models import TrainingDomain
from zoo.tasks._outputs import Output

STAGES = ("train", "val", "test")


class AtomisticTask(pl.LightningModule):
    """Trains a model that maps a batch to a dict of predictions, on a list of :class:`Output`.

    The total loss is ``sum(output.weight * output.loss)``; each output logs its loss and its
    metrics per stage as ``{stage}/{name}_{metric}``. Optimizer and scheduler come from the
    config (LightningCLI's ``OptimizerCallable``/``LRSchedulerCallable``).

    Args:
        model: a module whose ``forward(batch)`` returns ``{name: tensor}``.
        outputs: what to train and measure.
        optimizer: callable mapping parameters to an optimizer (default AdamW, lr 1e-3).
        lr_scheduler: optional callable mapping the optimizer to a scheduler.
        monitor: metric a ``ReduceLROnPlateau`` scheduler watches.
        pretrained: a registry model (name, ``"hf://org/repo@revision"`` or folder) whose
            weights start the fit; ``--ckpt_path`` keeps its meaning of resuming a run.
        keep_pretrained_statistics: with ``pretrained``, keep its shift, scale and per-element
            reference energies instead of fitting them on this training set: right for a
            fine-tune at the same level of theory on little data, wrong for a new level of theory
            (whose reference energies differ).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        outputs: Sequence[Output],
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        monitor: str = "val/loss",
        pretrained: str | None = None,
        keep_pretrained_statistics: bool = False,
    ):
        super().__init__()
        if not outputs:
            raise ValueError("a task needs at least one output to train")
        self.save_hyperparameters()
        self.model = model
        self.outputs = [o if isinstance(o, Output) else Output(**o) for o in outputs]
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.monitor = monitor
        self.pretrained = pretrained
        self.keep_pretrained_statistics = keep_pretrained_statistics
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_{o.name}": o.make_metrics() for stage in STAGES for o in self.outputs}
        )

    def setup(self, stage: str) -> None:
        # Runs before a checkpoint is restored: resuming (--ckpt_path) keeps the checkpoint's
        # weights and statistics, while a fresh run or a fine-tune takes the pretrained weights
        # and then the statistics of its own training set (re-fitted reference energies).
        if stage != "fit" or self._trainer is None:
            return
        fresh = self.trainer.ckpt_path is None
        if self.pretrained and fresh:
            # here rather than in __init__: DDP is up, so one process per node downloads
            from zoo.registry import load_pretrained_weights

            load_pretrained_weights(self, self.pretrained)
        domain = TrainingDomain.of(self.model)
        if domain is not None and fresh:
            # what the model is trained on, so that inference can warn about what it was not: the
            # unlabelled structures of self-consistency training count, and a fine-tune widens
            # the pretrained domain
            for name in ("train_dataset", "unlabelled_dataset"):
                structures = getattr(self.trainer.datamodule, name, None)
                if structures is not None:
                    domain.fit(structures)
        if self.pretrained and fresh and self.keep_pretrained_statistics:
            return
        statistics = getattr(self.trainer.datamodule, "statistics", None)
        if statistics and hasattr(self.model, "set_statistics"):
            self.model.set_statistics(statistics)

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def compute_loss(
        self,
        batch,
        predictions,
        stage: str,
        outputs: Sequence[Output] | None = None,
        terms: Mapping[str, tuple[float, torch.Tensor]] | None = None,
    ) -> torch.Tensor:
        """Weighted loss of ``outputs`` (default: all of the task's), logging losses and metrics.

        ``terms`` are further losses that are no output of the model, such as a denoising loss,
        ``{name: (weight, loss)}``: each is logged as ``{stage}/{name}_loss`` and its weighted
        value joins the total, which is logged as ``{stage}/loss``.
        """
        total = 0.0
        batch_size = int(batch.num_graphs) if hasattr(batch, "num_graphs") else None
        for output in self.outputs if outputs is None else outputs:
            target = self._target(batch, output)
            prediction = predictions[output.name]
            if prediction.shape != target.shape:
                prediction = prediction.reshape(target.shape)
            loss = output.compute_loss(prediction, target)
            self.log(f"{stage}/{output.name}_loss", loss, batch_size=batch_size, sync_dist=stage != "train")
            metrics = self.metrics[f"{stage}_{output.name}"]
            metrics.update(prediction.detach(), target)
            self.log_dict({f"{stage}/{output.name}_{k}": m for k, m in metrics.items()}, batch_size=batch_size)
            total = total + output.weight * loss
        for name, (weight, loss) in (terms or {}).items():
            self.log(f"{stage}/{name}_loss", loss, batch_size=batch_size, sync_dist=stage != "train")
            total = total + weight * loss
        self.log(f"{stage}/loss", total, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        return total

    def training_loss(self, batch) -> torch.Tensor:
        """The loss of a training batch; tasks with training-only terms (DeNS) override it."""
        return self.compute_loss(batch, self(batch), "train")

    def training_step(self, batch, batch_idx):
        return self.require_finite_loss(self.training_loss(batch), "train", batch_idx)

    def validation_step(self, batch, batch_idx):
        return self.require_finite_loss(self.compute_loss(batch, self(batch), "val"), "val", batch_idx)

    def test_step(self, batch, batch_idx):
        return self.require_finite_loss(self.compute_loss(batch, self(batch), "test"), "test", batch_idx)

    def require_finite_loss(self, loss: torch.Tensor, stage: str, batch_idx: int) -> torch.Tensor:
        """``loss``, or a ``FloatingPointError`` naming the stage and batch when it is NaN or inf.

        Validation and test too: a NaN there would otherwise end the fit with exit status 0,
        ``val/loss = nan`` and checkpoints chosen on it.
        """
        if not torch.isfinite(torch.as_tensor(loss)):  # a task with nothing to measure may return a float
            diverged = ("lower the learning rate or enable gradient clipping (trainer.gradient_clip_val)"
                        if stage == "train" else "its weights have diverged")
            raise FloatingPointError(
                f"{stage} loss is {float(loss)} on batch {batch_idx} at training step {self.global_step}: "
                f"either the {stage} inputs hold NaN or inf (labels, positions), or the model produced NaN "
                f"({diverged})"
            )
        return loss

    def predict_step(self, batch, batch_idx):
        return {k: v.detach() for k, v in self(batch).items()}

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        else:
            optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor}}

    @staticmethod
    def _target(batch, output: Output) -> torch.Tensor:
        if output.target not in batch:
            available = sorted(k for k in batch.keys() if k not in ("batch", "ptr"))
            raise KeyError(
                f"the batch has no labels {output.target!r} for output {output.name!r}; "
                f"available keys: {available}. Choose a dataset that has them or drop the output."
            )
        return batch[output.target]
