"""The LightningModule every family's task builds on."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.parsing import is_picklable

from zoo.data import Statistics, StatisticsSource, UsesStatistics, n_structures
from zoo.losses import AuxiliaryLoss, Forward, Output, Progress, Step
from zoo.models import Predictor, StructureGenerator, TrainingDomain
from zoo.models._inference import BATCH_SIZE
from zoo.tasks._budget import AnnealOverBudget, budget_fraction
from zoo.tasks._fine_tuning import check_fine_tuning_data

STAGES = ("train", "val", "test")


class AtomisticTask(pl.LightningModule):
    """Trains a model that maps a batch to a dict of predictions, on a list of :class:`~zoo.losses.Output`
    and a list of :class:`~zoo.losses.AuxiliaryLoss`.

    The total loss of a step is ``sum(output.weight * output.loss) + sum(weight * auxiliary
    loss)``, each output on the rows that hold its labels (:meth:`~zoo.losses.Output.select`).
    Each output logs its loss and its metrics per stage as ``{stage}/{name}_loss`` and
    ``{stage}/{name}_{metric}``, each auxiliary loss ``{stage}/{name}_loss``, the total
    ``{stage}/loss``. Optimizer and scheduler come from the config (LightningCLI's
    ``OptimizerCallable``/``LRSchedulerCallable``).

    At the start of a fit the training set's :class:`~zoo.data.Statistics` (the data module's
    ``statistics``) go to the model and to the auxiliary losses (their ``set_statistics``).

    After training, or as ``zoo.load`` returns it, a task answers ASE structures through its
    model's declared interfaces (:mod:`zoo.models._inference`), the same entry points for every
    family: :meth:`predict`, :meth:`as_calculator` (a model with a potential energy) and
    :meth:`generate` (a model that generates structures)::

        task = zoo.load("qm9-u0-demo")
        task.predict(atoms)                  # {"U0": float}; task.prediction_units: {"U0": "eV"}

    Args:
        model: a module whose ``forward(batch)`` returns ``{name: tensor}``.
        outputs: what to train and measure.
        optimizer: callable mapping parameters to an optimizer (default AdamW, lr 1e-3).
        lr_scheduler: optional callable mapping the optimizer to a scheduler.
        monitor: metric a ``ReduceLROnPlateau`` scheduler watches.
        pretrained: a registry model (name, ``"hf://org/repo@revision"`` or folder) whose
            weights start the fit; ``--ckpt_path`` keeps its meaning of resuming a run. Its
            backbone must fit this task's whole (an error otherwise); heads of another shape
            (other targets or levels of theory) start fresh, and the log says which.
        keep_pretrained_statistics: with ``pretrained``, keep its shift, scale and per-element
            reference energies instead of fitting them on this training set: right for a
            fine-tune at the same level of theory on little data, wrong for a new level of theory
            (whose reference energies differ).
        auxiliary_losses: further loss terms, each registered under its ``name`` (``task.dens``).
    """

    #: Where the task was loaded from (a :class:`zoo.registry.Provenance`), set by ``zoo.load``.
    registry_info = None

    def __init__(
        self,
        model: torch.nn.Module,
        outputs: Sequence[Output],
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        monitor: str = "val/loss",
        pretrained: str | None = None,
        keep_pretrained_statistics: bool = False,
        auxiliary_losses: Sequence[AuxiliaryLoss] = (),
    ):
        super().__init__()
        if not outputs:
            raise ValueError("a task needs at least one output to train")
        with warnings.catch_warnings():  # Lightning's advice for modules built in Python, handled below
            warnings.filterwarnings("ignore", message=r".*is an instance of `nn.Module`")
            self.save_hyperparameters()
        # Built in Python, not from a config: the weights hold a module, not its pickle, and an
        # optimizer given as a lambda cannot be saved (Lightning would drop it at fit time, warning)
        unsaved = [name for name, value in self.hparams.items()
                   if isinstance(value, torch.nn.Module) or not is_picklable(value)]
        if unsaved:
            self.save_hyperparameters(ignore=unsaved)
        self.model = model
        self.outputs = [o if isinstance(o, Output) else Output(**o) for o in outputs]
        self._auxiliary_names = []
        for loss in auxiliary_losses:
            if hasattr(self, loss.name):
                raise ValueError(f"an auxiliary loss is named {loss.name!r}, which the task already has")
            self.add_module(loss.name, loss)  # its tensors are saved under its name (dens.*)
            self._auxiliary_names.append(loss.name)
        if sum(type(loss).predict is not AuxiliaryLoss.predict for loss in auxiliary_losses) > 1:
            raise ValueError("at most one auxiliary loss may make the forward pass of training steps")
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.monitor = monitor
        self.pretrained = pretrained
        self.keep_pretrained_statistics = keep_pretrained_statistics
        self.metrics = torch.nn.ModuleDict(
            {f"{stage}_{o.name}": o.make_metrics() for stage in STAGES for o in self.outputs}
        )

    def __deepcopy__(self, memo):
        # a copy of the weights (an EMA's average, a fine-tune's frozen reference) shares the
        # optimizer factories (jsonargparse callables that reach the parser) and leaves the trainer
        # behind: copying it would copy its data, and under DDP its launcher's process handles,
        # which cannot be copied ("cannot pickle '_thread.lock'")
        for shared in (self.optimizer_factory, self.scheduler_factory):
            if shared is not None:
                memo[id(shared)] = shared
        if self._trainer is not None:
            memo[id(self._trainer)] = None
        copied = type(self).__new__(type(self))
        memo[id(self)] = copied
        for name, value in self.__dict__.items():
            copied.__dict__[name] = copy.deepcopy(value, memo)
        return copied

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

            # the backbone must come whole from the pretrained model; heads may be new
            load_pretrained_weights(self, self.pretrained, required=["model.backbone.*"])
        domain = TrainingDomain.of(self.model)
        if domain is not None and fresh:
            # what the model is trained on, so that inference can warn about what it was not: the
            # unlabelled structures of self-consistency training count, and a fine-tune widens
            # the pretrained domain
            for name in ("train_dataset", "unlabelled_dataset"):
                structures = getattr(self.trainer.datamodule, name, None)
                if structures is not None:
                    domain.fit(structures)
        datamodule = self.trainer.datamodule
        if isinstance(datamodule, StatisticsSource) and datamodule.statistics:
            statistics = Statistics.of(datamodule.statistics)
            keep = bool(self.pretrained and fresh and self.keep_pretrained_statistics)
            if self.pretrained and fresh:
                check_fine_tuning_data(self.model, statistics, getattr(datamodule, "train_dataset", None), keep,
                                       self.pretrained)
            self.set_statistics(statistics, model=not keep)

    def set_statistics(self, statistics: Statistics, model: bool = True) -> None:
        """Hand the training set's statistics to the auxiliary losses and, unless ``model`` is
        false (a fine-tune that keeps the pretrained ones), to the model."""
        if model and isinstance(self.model, UsesStatistics):
            self.model.set_statistics(statistics)
        for loss in self.auxiliary_losses.values():
            loss.set_statistics(statistics)

    @property
    def auxiliary_losses(self) -> dict[str, AuxiliaryLoss]:
        """The task's auxiliary losses by name, in the order they are computed."""
        return {name: self.get_submodule(name) for name in self._auxiliary_names}

    def progress(self) -> Progress:
        """Where training is: epoch, step, and the fraction of the run's budget spent
        (:func:`~zoo.tasks.budget_fraction`: steps or wall clock, whichever ends the run; 0 outside
        a fit, where the run has no length)."""
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        return Progress(self.current_epoch, self.global_step, budget_fraction(self.trainer) if fitting else 0.0)

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.model(batch)

    def forward_pass(self, batch, stage: str) -> Forward:
        """The predictions a step of ``stage`` trains and measures: those of the auxiliary loss that
        makes the forward pass of training steps (DeNS's corrupted structures), if any, else the
        model's on the batch."""
        if stage == "train":
            for loss in self.auxiliary_losses.values():
                forward = loss.predict(self.model, batch)
                if forward is not None:
                    return forward
        return Forward(self(batch))

    def active_outputs(self, stage: str) -> list[Output]:
        """The outputs trained and measured in ``stage`` (all of them, unless a task schedules some)."""
        return self.outputs

    def make_step(self, batch, forward: Forward, stage: str, batch_idx: int = 0) -> Step:
        """What the auxiliary losses read in a step of ``stage`` on ``batch``."""
        return Step(self.model, batch, forward, stage, self.progress(), batch_idx, self.log)

    def auxiliary_terms(self, step: Step, skip: Sequence[str] = ()) -> dict[str, tuple[float, torch.Tensor]]:
        """``{name: (weight, loss)}`` of the auxiliary losses computed in ``step``: those of its stage
        that are active and apply to its batch, except those named in ``skip``."""
        terms = {}
        for name, loss in self.auxiliary_losses.items():
            if name not in skip and step.stage in loss.stages and loss.active(step):
                value = loss(step)
                if value is not None:
                    terms[name] = (loss.weight(step.progress), value)
        return terms

    def step_loss(self, batch, stage: str, batch_idx: int = 0) -> torch.Tensor:
        """The total loss of one batch in ``stage``: its forward pass (:meth:`forward_pass`), the
        outputs of the stage on their labels, and the auxiliary losses of the stage."""
        forward = self.forward_pass(batch, stage)
        terms = self.auxiliary_terms(self.make_step(batch, forward, stage, batch_idx))
        return self.compute_loss(batch, forward.predictions, stage, self.active_outputs(stage), terms, forward.atoms,
                                 forward.structures)

    def compute_loss(
        self,
        batch,
        predictions,
        stage: str,
        outputs: Sequence[Output] | None = None,
        terms: Mapping[str, tuple[float, torch.Tensor]] | None = None,
        atoms: torch.Tensor | None = None,
        structures: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Weighted loss of ``outputs`` (default: all of the task's) and ``terms``, logged with the
        outputs' metrics as ``{stage}/...``; the total is logged as ``{stage}/loss``.

        Each output is compared on the rows that hold its labels, per-atom ones on ``atoms`` only
        ([n_atoms] bool) and per-structure ones on ``structures`` only ([n_structures] bool)
        (:meth:`~zoo.losses.Output.select`); an output without labels in
        the batch adds nothing. ``terms`` are losses that are no output of the model,
        ``{name: (weight, loss)}`` (see :meth:`weighted_terms`).
        """
        total = 0.0
        batch_size = n_structures(batch)
        for output in self.outputs if outputs is None else outputs:
            selected = output.select(batch, predictions, atoms, structures)
            if selected is None:
                continue
            prediction, target = selected
            loss = output.compute_loss(prediction, target)
            self.log(f"{stage}/{output.name}_loss", loss, batch_size=batch_size, sync_dist=stage != "train")
            metrics = self.metrics[f"{stage}_{output.name}"]
            metrics.update(prediction.detach(), target)
            self.log_dict({f"{stage}/{output.name}_{k}": m for k, m in metrics.items()}, batch_size=batch_size)
            total = total + output.weight * loss
        total = total + self.weighted_terms(terms or {}, stage, batch_size)
        self.log(f"{stage}/loss", total, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        return total

    def weighted_terms(self, terms: Mapping[str, tuple[float, torch.Tensor]], stage: str,
                       batch_size: int) -> torch.Tensor | float:
        """``sum(weight * loss)`` of ``terms`` ``{name: (weight, loss)}``, each logged as ``{stage}/{name}_loss``."""
        total = 0.0
        for name, (weight, loss) in terms.items():
            self.log(f"{stage}/{name}_loss", loss, batch_size=batch_size, sync_dist=stage != "train")
            total = total + weight * loss
        return total

    def on_train_batch_start(self, batch, batch_idx) -> None:
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, AnnealOverBudget):
                config.scheduler.set_fraction(self.progress().fraction)

    def training_step(self, batch, batch_idx):
        return self.require_finite_loss(self.step_loss(batch, "train", batch_idx), "train", batch_idx)

    def validation_step(self, batch, batch_idx):
        return self.require_finite_loss(self.step_loss(batch, "val", batch_idx), "val", batch_idx)

    def test_step(self, batch, batch_idx):
        return self.require_finite_loss(self.step_loss(batch, "test", batch_idx), "test", batch_idx)

    def require_finite_loss(self, loss: torch.Tensor, stage: str, batch_idx: int) -> torch.Tensor:
        """``loss``, or a ``FloatingPointError`` naming the stage and batch when it is NaN or inf.

        Validation and test too: a NaN there would otherwise end the fit with exit status 0,
        ``val/loss = nan`` and checkpoints chosen on it.
        """
        if not torch.isfinite(torch.as_tensor(loss)):  # a task with nothing to measure may return a float
            diverged = ("lower the learning rate or enable gradient clipping (trainer.gradient_clip_val)"
                        if stage == "train" else "its weights have diverged")
            raise FloatingPointError(
                f"{stage} loss is {float(torch.as_tensor(loss).detach())} on batch {batch_idx} at training step {self.global_step}: "
                f"either the {stage} inputs hold NaN or inf (labels, positions), or the model produced NaN "
                f"({diverged})"
            )
        return loss

    # --- inference: the model's declared interfaces, the same entry points for every family --------------

    @property
    def prediction_units(self) -> dict[str, str]:
        """``{key: unit}`` of :meth:`predict`'s dicts (:attr:`zoo.models.Predictor.prediction_units`)."""
        return self._predictor("predictions").prediction_units

    def predict(self, structures, batch_size: int = BATCH_SIZE, **options):
        """The model's predictions for an :class:`ase.Atoms` (a dict) or a list of them (a list of
        dicts), ``batch_size`` per forward pass: :meth:`zoo.models.Predictor.predict`. ``options``
        are the model's own (a Hamiltonian model's ``lindep``, a consistency model's ``smiles``)."""
        return self._predictor("predict").predict(structures, batch_size, **options)

    def as_calculator(self, **kwargs):
        """The model as an ASE calculator (:class:`zoo.interfaces.ZooCalculator`; ``device`` and
        ``dtype`` may differ from the model's, the calculator then works on a converted copy).

        Raises:
            TypeError: the model predicts no potential energy (a Hamiltonian model).
        """
        return self._predictor("as_calculator").as_calculator(**kwargs)

    def generate(self, molecule, k: int = 1, **options) -> list:
        """``k`` structures of a molecule (a SMILES or an RDKit molecule) as :class:`ase.Atoms`:
        :meth:`zoo.models.ConsistencyModel.generate`, whose ``options`` these are.

        Raises:
            TypeError: the model does not generate structures.
        """
        if not isinstance(self.model, StructureGenerator):
            raise TypeError(f"{self._what()} does not generate structures; the consistency models do "
                            "(zoo list --family consistency)")
        return self.model.generate(molecule, k, **options)

    def _predictor(self, what: str) -> Predictor:
        if not isinstance(self.model, Predictor):
            raise TypeError(f"{self._what()} is no zoo.models.Predictor, so it has no {what}: declare the interface "
                            "on the model class (zoo.models.Predictor) to answer ASE structures")
        return self.model

    def _what(self) -> str:
        """The model, by its registry name if it was loaded from the registry."""
        name = type(self.model).__name__
        return name if self.registry_info is None else f"{name} {self.registry_info.name!r}"

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
