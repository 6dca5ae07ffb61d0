"""Replay the first steps of a DeNS study run and record, step by step, what its loss is made of.

A study run (``study.py``) is deterministic on the CPU: the same options and seed give the same
batches, the same noise and the same weights. This script fits the run ``study.py`` would fit
(its options are the study's) in a scratch folder, stops after ``--steps`` optimizer steps, and
writes one JSON line per step: the losses, the gradient's total 2-norm before any clipping, and the
largest magnitudes along the DeNS path (the encoded forces |F|/s of the corrupted atoms, the force
encoding's output, the backbone's node features and the denoising head's prediction on the
corrupted atoms). A step whose denoising loss spikes shows where the spike starts.

    python benchmarks/dens/step_trace.py --molecule ethanol --interaction many_body \\
        --add-on long_training anneal --epochs 300 --seed 1 \\
        --dens supervise_corrupted=false loss_weight=0.2 --steps 460 --out /tmp/trace.jsonl
    python benchmarks/dens/step_trace.py --table "as published=/tmp/trace.jsonl" ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import study  # noqa: E402  (the study's run options, so the replay is the study's run)


class StepTrace(pl.Callback):
    """Per optimizer step: logged losses, gradient norm and DeNS magnitudes, as JSON lines."""

    def __init__(self, out: str, steps: int):
        self.out, self.steps = Path(out), steps
        self.current: dict = {}

    def on_fit_start(self, trainer, task):
        self.out.write_text("")
        dens = getattr(task, "dens", None)  # registered under its name only when the run has DeNS
        if dens is None:  # a run without DeNS: losses and gradient norms only
            return
        force_scale = float(dens.encoding.force_scale)

        def record(name, value):
            self.current[name] = max(self.current.get(name, 0.0), float(value.detach()))

        def encoding_hook(module, inputs, output):
            forces, mask = inputs
            if mask.any():
                record("max_encoded_force", forces[mask].norm(dim=-1).max() / force_scale)
            record("max_encoding", output.abs().max())
            self._mask = mask

        def head_hook(module, inputs, output):
            record("max_node_feature", inputs[0].abs().max())
            if self._mask.any():
                record("max_noise_prediction", output[self._mask].abs().max())

        self._mask = torch.zeros(0, dtype=torch.bool)
        dens.encoding.register_forward_hook(encoding_hook)
        dens.head.register_forward_hook(head_hook)

    def on_before_optimizer_step(self, trainer, task, optimizer):
        gradients = [p.grad.detach().norm() for p in task.parameters() if p.grad is not None]
        self.current["grad_norm"] = float(torch.stack(gradients).norm())

    def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
        losses = {name.removeprefix("train/"): float(value) for name, value in trainer.callback_metrics.items()
                  if name.startswith("train/") or name == "val/forces_mae"}  # the last validation's
        line = {"step": trainer.global_step, "epoch": trainer.current_epoch, **losses, **self.current}
        with self.out.open("a") as file:
            file.write(json.dumps(line) + "\n")
        self.current = {}
        if trainer.global_step >= self.steps:
            trainer.should_stop = True


def table(traces: dict[str, Path]) -> str:
    """A Markdown table of several traces (label -> JSON lines file): how many steps spiked and
    how large the DeNS path's magnitudes grew."""
    lines = ["| run | steps | denoising loss > 20 | largest denoising loss | node features, median (max) | "
             "gradient norm, median | force loss, last 100 steps | last validation force MAE (meV/Å) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, path in traces.items():
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        corrupted = [r["max_node_feature"] for r in rows if "max_noise_prediction" in r]
        losses = [r.get("dens_loss", 0.0) for r in rows]
        last = rows[-100:]
        validation = rows[-1].get("val/forces_mae")
        lines.append(f"| {label} | {len(rows)} | {sum(loss > 20 for loss in losses)} | {max(losses):.3g} | "
                     f"{statistics.median(corrupted):.3g} ({max(corrupted):.3g}) | "
                     f"{statistics.median(r['grad_norm'] for r in rows):.3g} | "
                     f"{statistics.mean(r['forces_loss'] for r in last):.3g} | {'–' if validation is None else f'{1e3 * validation:.1f}'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", choices=study.MOLECULES, default="ethanol")
    parser.add_argument("--epochs", type=int, default=12, help="the study's --epochs (the schedules depend on it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", choices=sorted(study.RECIPES), default="dens")
    parser.add_argument("--steps", type=int, default=500, help="stop after this many optimizer steps")
    parser.add_argument("--out", help="JSON lines, one per step")
    parser.add_argument("--fit", nargs="*", default=[], metavar="OPTION",
                        help="further zoo fit options, e.g. --fit=--trainer.gradient_clip_val=10")
    parser.add_argument("--table", nargs="+", metavar="LABEL=TRACE",
                        help="print a Markdown table of these traces instead of running one")
    study._add_variant_options(parser)
    args = parser.parse_args(argv)
    if args.table:
        print(table({label: Path(path) for label, _, path in (item.partition("=") for item in args.table)}), end="")
        return
    if args.out is None:
        parser.error("--out is required to run a trace")
    data = study.ROOT / "data" / args.molecule / f"{args.molecule}_pbe_def2svp"
    args.train, args.n_train, args.n_val = f"{data}_train.extxyz", 950, 50

    from zoo.cli import lightning_main

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    del sys.argv[1:]  # the fit's options are the study's, not this script's
    with tempfile.TemporaryDirectory() as scratch:
        args.out_json = args.out
        args.out = str(Path(scratch) / "trace.json")  # the run folder goes under the scratch folder
        arguments = study.fit_arguments(args, args.variant, args.seed, None)
        trace = {"class_path": "__main__.StepTrace", "init_args": {"out": str(Path(args.out_json).resolve()),
                                                                    "steps": args.steps}}
        lightning_main(arguments + ["--trainer.log_every_n_steps", "1",
                                    "--trainer.callbacks+", json.dumps(trace), *args.fit])


if __name__ == "__main__":
    main()
