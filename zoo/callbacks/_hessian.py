"""Per-output loss curvature during training: Hessian eigenvalues, trace and spectral density."""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import islice
from pathlib import Path

import lightning.pytorch as pl
import torch

from zoo.analysis import (
    HessianOperator,
    hutchinson_trace,
    select_parameters,
    spectral_density,
    stochastic_lanczos_quadrature,
    top_eigenvalues,
)
from zoo.data import keys
from zoo.losses import LOSSES
from zoo.models import RescaledModel

NORMALIZATIONS = ("model", "output")


class HessianSpectrum(pl.Callback):
    """Every ``every_n_epochs`` training epochs, the Hessian spectrum of each output's loss.

    For each output of an :class:`zoo.tasks.AtomisticTask`, its loss on a fixed set of batches
    (the first ``num_batches`` of the training loader, drawn once without disturbing the
    training's random state) is differentiated twice with respect to a parameter subset; through
    Hessian-vector products (:mod:`zoo.analysis`) the callback measures the ``top_k`` eigenvalues
    of largest magnitude (power iteration with deflation), the trace (Hutchinson, Rademacher
    vectors) and the spectral density (stochastic Lanczos quadrature). It logs
    ``hessian/{output}_lambda{i}``, ``hessian/{output}_trace`` and ``..._trace_error``, appends
    every number (with the SLQ nodes and weights) to ``hessian.json`` and draws
    ``hessian_epoch{N}.png`` in ``folder``.

    Losses are compared on standardised targets, so that curvatures of targets in different
    units are comparable: with ``normalize="model"`` prediction and label are divided by the
    model's ``scale`` for that target (the training-set standard deviation set by
    ``set_statistics``), and by the number of atoms where the model's ``per_atom`` flags
    per-atom statistics (extensive energies, see :class:`zoo.models.MPNN`); with ``"output"`` the
    output's own training loss is used (its ``Output.scale``). Loss weights are left out.

    Args:
        every_n_epochs: measure after every n-th training epoch.
        parameters: name patterns (:func:`zoo.analysis.select_parameters`) of the task's parameters,
            e.g. ``["model.embedding.*", "model.message.*", "model.update.*"]`` for an MPNN's
            shared trunk; ``None`` for all.
        outputs: names of the outputs to analyse (default: all).
        num_batches: size of the fixed batch set.
        top_k: number of eigenvalues (at most the number of parameters analysed).
        power_iterations, tol: limits of each power iteration.
        trace_samples: Rademacher vectors of the Hutchinson estimate.
        lanczos_steps, slq_vectors: Lanczos steps per start vector, and start vectors, of SLQ.
        normalize: ``"model"`` or ``"output"`` (above).
        folder: where the JSON and figures go (default: ``{trainer.log_dir}/hessian``).
        figure: draw a figure per measurement (needs matplotlib).
        seed: of the random vectors; the same at every measurement.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        parameters: Sequence[str] | None = None,
        outputs: Sequence[str] | None = None,
        num_batches: int = 1,
        top_k: int = 3,
        power_iterations: int = 20,
        tol: float = 1e-3,
        trace_samples: int = 20,
        lanczos_steps: int = 20,
        slq_vectors: int = 1,
        normalize: str = "model",
        folder: str | None = None,
        figure: bool = True,
        seed: int = 0,
    ):
        if every_n_epochs < 1 or num_batches < 1:
            raise ValueError(f"every_n_epochs and num_batches must be >= 1, got {every_n_epochs}, {num_batches}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        self.every_n_epochs = every_n_epochs
        self.parameters = None if parameters is None else list(parameters)
        self.outputs = None if outputs is None else list(outputs)
        self.num_batches = num_batches
        self.top_k = top_k
        self.power_iterations = power_iterations
        self.tol = tol
        self.trace_samples = trace_samples
        self.lanczos_steps = lanczos_steps
        self.slq_vectors = slq_vectors
        self.normalize = normalize
        self.folder = None if folder is None else Path(folder)
        self.figure = figure
        self.seed = seed
        self.batches: list | None = None
        self.history: list[dict] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        if self.batches is None:
            self.batches = self._draw_batches(trainer, pl_module)
        results = self.measure(pl_module, self.batches)
        for name, result in results.items():
            values = {f"hessian/{name}_lambda{i}": v for i, v in enumerate(result["eigenvalues"])}
            values[f"hessian/{name}_trace"] = result["trace"]
            values[f"hessian/{name}_trace_error"] = result["trace_error"]
            pl_module.log_dict(values, rank_zero_only=True)
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, "outputs": results})
        folder = self.folder or Path(trainer.log_dir or trainer.default_root_dir) / "hessian"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "hessian.json").write_text(json.dumps(self.history, indent=1) + "\n")
        if self.figure:
            plot_spectra(results, folder / f"hessian_epoch{trainer.current_epoch:03d}.png",
                         title=f"epoch {trainer.current_epoch}")

    def measure(self, pl_module: pl.LightningModule, batches: Sequence) -> dict[str, dict]:
        """The spectrum of each analysed output's loss on ``batches`` (on the module's device).

        Returns:
            ``{output: {"loss", "dim", "eigenvalues", "trace", "trace_error", "slq_nodes",
            "slq_weights"}}`` as plain floats and lists.
        """
        if not batches:
            raise ValueError("HessianSpectrum needs at least one batch to measure the Hessian on")
        outputs = self._outputs(pl_module)
        scales = {output.name: self._scale(pl_module, output) for output in outputs}
        parameters = select_parameters(pl_module, self.parameters)
        was_training = pl_module.training
        pl_module.eval()
        results = {}
        try:
            # cuDNN's RNN kernels (the set2set LSTM) have no double backward
            with torch.inference_mode(False), torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
                predictions = [pl_module(batch) for batch in batches]
                for output in outputs:
                    loss = self._loss(output, *scales[output.name], batches, predictions)
                    results[output.name] = self._spectrum(output, loss, parameters)
        finally:
            pl_module.train(was_training)
        return results

    def _draw_batches(self, trainer, pl_module) -> list:
        loader = trainer.train_dataloader
        # drawing a shuffled loader consumes random numbers; the training's shuffles must not change
        with torch.random.fork_rng(devices=[]):
            batches = list(islice(iter(loader), self.num_batches))
        if not batches:
            raise ValueError("the training loader is empty: no batches to measure the Hessian on")
        return [pl_module.transfer_batch_to_device(b, pl_module.device, 0) for b in batches]

    def _outputs(self, pl_module):
        outputs = list(pl_module.outputs)
        if self.outputs is None:
            return outputs
        names = [o.name for o in outputs]
        unknown = [n for n in self.outputs if n not in names]
        if unknown:
            raise ValueError(f"HessianSpectrum: outputs {unknown} are not outputs of the task, which has {names}")
        return [o for o in outputs if o.name in self.outputs]

    @staticmethod
    def _loss(output, scale, per_atom, batches, predictions) -> torch.Tensor:
        losses = []
        for batch, prediction in zip(batches, predictions):
            if output.target not in batch:
                continue  # this batch has no labels for this output
            target = batch[output.target]
            prediction = prediction[output.name].reshape(target.shape)
            if scale is None:
                losses.append(output.compute_loss(prediction, target))
                continue
            divisor = scale * batch[keys.N_ATOMS].to(target.dtype).reshape(-1, *[1] * (target.dim() - 1)) \
                if per_atom else scale
            losses.append(LOSSES[output.loss](prediction / divisor, target / divisor))
        if not losses:
            available = sorted(k for k in batches[0].keys() if k not in ("batch", "ptr"))
            raise ValueError(
                f"HessianSpectrum: output {output.name!r} has no labels {output.target!r} in any of the "
                f"{len(batches)} batches; available keys: {available}. Leave it out with outputs=[...]"
            )
        return torch.stack(losses).mean()

    def _scale(self, pl_module, output) -> tuple[torch.Tensor | None, bool]:
        if self.normalize == "output":
            return None, False
        model = pl_module.model
        if not isinstance(model, RescaledModel) or output.name not in model.targets:
            raise ValueError(
                f"HessianSpectrum(normalize='model') needs a model with statistics (a zoo.models.RescaledModel) "
                f"that predicts {output.name!r}; {type(model).__name__} is none. Use normalize='output'"
            )
        return model.target_scale(output.name)

    def _spectrum(self, output, loss, parameters) -> dict:
        try:
            operator = HessianOperator(loss, parameters)
        except ValueError as error:
            raise ValueError(f"HessianSpectrum, output {output.name!r}: {error}") from None
        generator = torch.Generator().manual_seed(self.seed)
        values, _ = top_eigenvalues(operator, operator.dim, min(self.top_k, operator.dim),
                                    self.power_iterations, self.tol, generator)
        trace, error = hutchinson_trace(operator, operator.dim, self.trace_samples, generator)
        nodes, weights = stochastic_lanczos_quadrature(operator, operator.dim, self.lanczos_steps,
                                                       self.slq_vectors, generator)
        return {"loss": loss.item(), "dim": operator.dim, "eigenvalues": values.tolist(), "trace": trace,
                "trace_error": error, "slq_nodes": nodes.tolist(), "slq_weights": weights.tolist()}


def plot_spectra(results: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Draw the SLQ densities (broadened) and top eigenvalues of :meth:`HessianSpectrum.measure`'s results."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), layout="constrained")
    density_axes, eigen_axes = figure.subplots(1, 2)
    nodes = torch.tensor([x for r in results.values() for x in r["slq_nodes"]], dtype=torch.float64)
    low, high = float(nodes.min()), float(nodes.max())
    width = max(high - low, 1e-12)
    grid = torch.linspace(low - 0.05 * width, high + 0.05 * width, 1000, dtype=torch.float64)
    for name, r in results.items():
        density = spectral_density(torch.tensor(r["slq_nodes"]), torch.tensor(r["slq_weights"]), grid, 0.01 * width)
        density_axes.semilogy(grid, density.clamp_min(1e-12), label=f"{name} (tr {r['trace']:.3g})")
        eigen_axes.plot(range(1, len(r["eigenvalues"]) + 1), r["eigenvalues"], "o-", label=name)
    density_axes.set(xlabel="Hessian eigenvalue", ylabel="density (SLQ, broadened)", title=title)
    density_axes.set_ylim(bottom=1e-6)
    density_axes.legend(fontsize="small")
    eigen_axes.set(xlabel="rank", ylabel="eigenvalue (power iteration)", yscale="symlog", title="top eigenvalues")
    eigen_axes.legend(fontsize="small")
    figure.savefig(path, dpi=100)
    return Path(path)
