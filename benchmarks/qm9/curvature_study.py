"""Single- versus multi-target MPNN on a QM9 subset, with the per-target Hessian spectra.

Trains one MPNN per target and one MPNN on all the targets jointly, with the same architecture,
data, split, optimiser and number of epochs; then, for every model and target, measures the
Hessian of the target's standardised MSE with respect to the shared trunk (embedding, edge
network, GRU, set2set) on a fixed batch of training molecules (zoo.callbacks.HessianSpectrum).
The question: does curvature imbalance in the joint model (a target whose curvature is small
next to the others') predict which targets lose accuracy from joint training?

    OMP_NUM_THREADS=1 python benchmarks/qm9/curvature_study.py    # ~15 min on one CPU core (12 targets); writes results/curvature_study.{json,md,png}

Gilmer et al.'s MAEs (REFERENCES.md) are quoted beside ours; their budget (110k training
molecules, a far longer schedule on a GPU) is orders of magnitude above this one.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch_geometric.data import Batch

from zoo.callbacks import HessianSpectrum
from zoo.callbacks._hessian import plot_spectra
from zoo.data.datamodule import AtomicDataModule
from zoo.data.readers.qm9 import QM9_PROPERTIES
from zoo.models import MPNN
from zoo.tasks import AtomisticTask, Output

RESULTS = Path(__file__).resolve().parent / "results"
ELEMENTS = ["H", "C", "N", "O", "F"]
ENERGIES = {"U0", "U", "H", "G"}
#: Gilmer et al. 2017, MPNN (enn-s2s), single-target models, test MAE (REFERENCES.md); their
#: energies are in eV, R2 in bohr^2, alpha in bohr^3, mu in D, Cv in cal/mol/K as ours.
GILMER_MAE = {"mu": 0.030, "alpha": 0.092, "homo": 0.043, "lumo": 0.037, "gap": 0.069, "r2": 0.18,
              "zpve": 0.0015, "U0": 0.019, "U": 0.019, "H": 0.017, "G": 0.019, "cv": 0.040}
TRUNK = ["model.embedding.*", "model.message.*", "model.update.*", "model.set2set.*"]


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=list(GILMER_MAE), help="default: Gilmer's 12 targets")
    parser.add_argument("--molecules", type=int, default=1000, help="every (130000 // N)-th qm9pack row")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hessian-molecules", type=int, default=16)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def residual_std(data: AtomicDataModule, target: str) -> float:
    """Standard deviation over the training set of what the model must learn, per molecule."""
    stats = data.statistics[target]
    references = stats.get("reference_energies", {})
    values = [float(d[target]) - sum(references.get(int(z), 0.0) for z in d.z) for d in data.train_dataset]
    return float(torch.tensor(values).std())


def train(data, targets, scales, args, seed=0):
    pl.seed_everything(seed, verbose=False)
    model = MPNN(ELEMENTS, targets, channels=args.channels, num_steps=3, set2set_steps=3, edge_hidden=64)
    outputs = [Output(t, scale=scales[t], metrics=["mae"]) for t in targets]
    task = AtomisticTask(model, outputs, optimizer=lambda p: torch.optim.Adam(p, lr=args.lr))
    trainer = pl.Trainer(max_epochs=args.epochs, logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, default_root_dir=args.out / "runs")
    start = time.perf_counter()
    trainer.fit(task, datamodule=data)
    seconds = time.perf_counter() - start
    metrics = trainer.test(task, datamodule=data, verbose=False)[0]
    return task, {t: metrics[f"test/{t}_mae"] for t in targets}, seconds


def main():
    args = parse()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    args.out.mkdir(parents=True, exist_ok=True)
    n = args.molecules
    n_test = n_val = n // 10
    data = AtomicDataModule(
        "qm9", reader_kwargs={"indices": list(range(0, 130_000, 130_000 // n))[:n]}, cutoff=5.0,
        targets=args.targets, standardize=args.targets, reference_energies=[t for t in args.targets if t in ENERGIES],
        split={"method": "random", "sizes": [n - n_val - n_test, n_val, n_test], "seed": 0},
        batch_size=args.batch_size, split_dir=str(args.out / "runs"),
    )
    data.setup("fit")
    scales = {t: residual_std(data, t) for t in args.targets}
    fixed = [Batch.from_data_list([data.train_dataset[i] for i in range(args.hessian_molecules)])]
    spectrum = HessianSpectrum(parameters=TRUNK, top_k=2, power_iterations=10, tol=1e-3, trace_samples=10,
                               lanczos_steps=15, normalize="model")

    started = time.perf_counter()
    runs = {}
    for name, targets in [*[(t, [t]) for t in args.targets], ("joint", list(args.targets))]:
        task, mae, seconds = train(data, targets, scales, args)
        hessian_start = time.perf_counter()
        curvature = spectrum.measure(task, fixed)
        runs[name] = {"targets": targets, "test_mae": mae, "train_seconds": round(seconds, 1),
                      "hessian_seconds": round(time.perf_counter() - hessian_start, 1), "hessian": curvature}
        print(name, {t: round(v, 4) for t, v in mae.items()},
              {t: (round(c["eigenvalues"][0], 3), round(c["trace"], 2)) for t, c in curvature.items()},
              f"{seconds:.0f} s", flush=True)
    total = time.perf_counter() - started

    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} thread(s)",
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "split": [len(data.train_dataset), len(data.val_dataset), len(data.test_dataset)],
        "scales": scales, "total_seconds": round(total, 1), "runs": runs,
    }
    (args.out / "curvature_study.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_spectra({f"{t} (joint)": c for t, c in runs["joint"]["hessian"].items()},
                 args.out / "curvature_study_joint.png", title="joint MPNN, trunk Hessian per target (end of training)")
    plot_spectra({t: runs[t]["hessian"][t] for t in args.targets},
                 args.out / "curvature_study_single.png", title="single-target MPNNs, trunk Hessian (end of training)")
    (args.out / "curvature_study.md").write_text(render(report))


def render(report) -> str:
    args, runs = report["args"], report["runs"]
    targets = args["targets"]
    joint = runs["joint"]["hessian"]
    top = max(abs(joint[t]["eigenvalues"][0]) for t in targets)
    lines = [
        "# Single- vs multi-target MPNN on QM9, with per-target curvature", "",
        "Command: `OMP_NUM_THREADS=1 python benchmarks/qm9/curvature_study.py --targets "
        f"{' '.join(targets)} --molecules {args['molecules']} --epochs {args['epochs']}`", "",
        f"- Date: {report['date']}; {report['machine']}; total wall time {report['total_seconds']:.0f} s",
        f"- Data: {args['molecules']} QM9 molecules (every {130_000 // args['molecules']}-th qm9pack row), "
        f"random split {'/'.join(map(str, report['split']))} (seed 0)",
        f"- Model: MPNN(channels={args['channels']}, num_steps=3, set2set_steps=3, edge_hidden=64), "
        f"Adam lr {args['lr']}, batch {args['batch_size']}, {args['epochs']} epochs per model, "
        "loss = sum over targets of MSE / (training std of the target)^2",
        f"- Hessian: of each target's standardised MSE w.r.t. the shared trunk ({', '.join(TRUNK)}), on "
        f"{args['hessian_molecules']} fixed training molecules, at the end of training; λ1 by power "
        "iteration (largest magnitude, signed), trace by Hutchinson (10 Rademacher vectors, ± standard error)",
        "",
        "| target | unit | Gilmer et al. MAE (110k train) | our single MAE | our joint MAE | joint / single "
        "| single: λ1, trace | joint: λ1, trace | joint: abs(λ1) / max abs(λ1) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in targets:
        single, together = runs[t]["test_mae"][t], runs["joint"]["test_mae"][t]
        s, j = runs[t]["hessian"][t], joint[t]
        lines.append(
            f"| {t} | {QM9_PROPERTIES[t][2]} | {GILMER_MAE[t]} | {single:.4g} | {together:.4g} | "
            f"{together / single:.2f} | {s['eigenvalues'][0]:.3g}, {s['trace']:.3g} ± {s['trace_error']:.2g} | "
            f"{j['eigenvalues'][0]:.3g}, {j['trace']:.3g} ± {j['trace_error']:.2g} | "
            f"{abs(j['eigenvalues'][0]) / top:.2f} |"
        )
    ratio = [runs["joint"]["test_mae"][t] / runs[t]["test_mae"][t] for t in targets]
    share = [abs(joint[t]["eigenvalues"][0]) / top for t in targets]
    lines += ["", f"Spearman rank correlation between joint λ1 share and joint/single MAE ratio over "
              f"{len(targets)} targets: {_spearman(share, ratio):.2f} (negative = flatter targets lose more).", ""]
    lines += ["Training time per model (s): " + ", ".join(f"{k} {v['train_seconds']}" for k, v in runs.items()), ""]
    return "\n".join(lines)


def _spearman(x, y) -> float:
    rank = lambda v: torch.tensor(v).argsort().argsort().double()  # noqa: E731
    rx, ry = rank(x), rank(y)
    return float(torch.corrcoef(torch.stack([rx, ry]))[0, 1])


if __name__ == "__main__":
    main()
