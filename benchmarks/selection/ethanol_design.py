"""Optimal design study: which ethanol structures to label, chosen before any DFT.

The pool is the 1000-frame ethanol training trajectory (500 K GFN2-xTB MD, seed 0); selection sees
only its geometries. For each selection method and budget k, a force field is trained on the k
chosen structures' PBE/def2-SVP labels for the same number of optimiser steps, and scored on the
independent 200-frame test trajectory (seed 1, never in the pool):

- ``d-optimal``: greedy D-optimal design over the features (:func:`zoo.selection.greedy_d_optimal`);
- ``fps``: farthest-point sampling in the same feature space;
- ``random``: uniform, one draw per seed.

Features: ``inverse-distance`` (sorted 1/r, a descriptor that needs no model) or ``qm9-u0-demo``
(pooled last-layer invariant features of the published QM9 model: a pretrained model that has
never seen ethanol's DFT labels). Records go to ``results/ethanol_design.json`` as each run ends
(the study resumes), and a table to ``results/ethanol_design.md``.

    OMP_NUM_THREADS=1 python benchmarks/selection/ethanol_design.py --sizes 25 50 100 200 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ("d-optimal", "fps", "random")
FEATURES = ("inverse-distance", "qm9-u0-demo")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", default=str(ROOT / "data/ethanol/ethanol_pbe_def2svp_train.extxyz"))
    parser.add_argument("--test", default=str(ROOT / "data/ethanol/ethanol_pbe_def2svp_test.extxyz"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--features", choices=FEATURES, default="inverse-distance")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds; also the random selection's and FPS's start")
    parser.add_argument("--steps", type=int, default=400, help="optimiser steps per run (batch 8), equal for all k")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--l-max", type=int, default=1)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "ethanol_design.json"))
    return parser.parse_args(argv)


def pool_features(images, kind: str) -> np.ndarray:
    from zoo.selection import descriptor_features, model_features

    if kind == "inverse-distance":
        return descriptor_features(images, kind="inverse-distance")
    import zoo

    return model_features(zoo.load(kind), images)


def selection(features: np.ndarray, method: str, k: int, seed: int) -> np.ndarray:
    from zoo.selection.commands import select

    return np.sort(select(features, k, method, seed=seed))


def train_and_test(args, indices: np.ndarray, seed: int, workdir: Path) -> dict:
    """Train a force field on the pool's ``indices`` for ``args.steps`` steps; test metrics (meV, meV/Å)."""
    import lightning.pytorch as pl
    import torch

    from zoo.callbacks import EMA
    from zoo.data import AtomicDataModule
    from zoo.data.splits import Split
    from zoo.models import EquivariantBackbone, ForceFieldModel
    from zoo.tasks import ForceFieldTask, Output

    pl.seed_everything(seed, verbose=False)
    workdir.mkdir(parents=True, exist_ok=True)
    split_path = Split(indices, np.array([], dtype=np.int64), np.array([], dtype=np.int64),
                       method="file", params={"selected": len(indices)}).save(workdir / "split.npz")
    data = AtomicDataModule(source=args.pool, test_source=args.test, cutoff=5.0, split_file=str(split_path),
                            targets=["energy", "forces"], standardize=["energy", "forces"],
                            reference_energies=["energy"], batch_size=8, eval_batch_size=50)
    backbone = EquivariantBackbone(elements=["H", "C", "O"], channels=args.channels, l_max=args.l_max,
                                   num_layers=args.layers, cutoff=5.0, num_radial=8, avg_num_neighbors=8.0)
    task = ForceFieldTask(
        ForceFieldModel(backbone, hidden=32),
        outputs=[Output("energy", loss="mse", weight=1.0, metrics=["mae", "rmse"]),
                 Output("forces", loss="mse", weight=100.0, metrics=["mae", "rmse"])],
        optimizer=lambda parameters: torch.optim.AdamW(parameters, lr=5e-3, weight_decay=0.0),
    )
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=args.steps, max_epochs=-1, limit_val_batches=0,
                         callbacks=[EMA(decay=0.99)], logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(workdir))
    start = time.perf_counter()
    trainer.fit(task, datamodule=data)
    fit_seconds = time.perf_counter() - start
    metrics = trainer.test(task, datamodule=data, verbose=False)[0]
    return {"fit_seconds": fit_seconds,
            "energy_mae_meV": 1e3 * metrics["test/energy_mae"],
            "forces_mae_meV_A": 1e3 * metrics["test/forces_mae"],
            "forces_rmse_meV_A": 1e3 * metrics["test/forces_rmse"]}


def main(args) -> None:
    import ase.io
    import torch

    from zoo.selection import log_det_information

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    out = Path(args.out)
    records = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["features"], r["method"], r["k"], r["seed"]) for r in records}
    images = ase.io.read(args.pool, index=":")
    features = pool_features(images, args.features)
    # standardised columns: D-optimality and FPS then weigh every feature alike
    features = (features - features.mean(0)) / np.where(features.std(0) > 0, features.std(0), 1.0)
    for seed in args.seeds:
        for k in args.sizes:
            for method in args.methods:
                key = (args.features, method, k, seed)
                if key in done:
                    continue
                indices = selection(features, method, k, seed)
                record = {"features": args.features, "method": method, "k": k, "seed": seed, "steps": args.steps,
                          "log_det": log_det_information(features, indices, ridge=1e-6 * len(indices)),
                          **train_and_test(args, indices, seed, out.parent / "runs" / f"{method}_k{k}_seed{seed}")}
                print(json.dumps(record), flush=True)
                records.append(record)
                out.parent.mkdir(parents=True, exist_ok=True)
                temporary = out.with_suffix(".json.tmp")
                temporary.write_text(json.dumps(records, indent=1) + "\n")
                temporary.replace(out)
    out.with_suffix(".md").write_text(table(records, args))


def table(records: list[dict], args) -> str:
    """Test force MAE (meV/Å), mean ± standard deviation over seeds, per method and k."""
    lines = [f"Ethanol optimal-design study: pool {Path(args.pool).name} ({args.features} features), "
             f"test {Path(args.test).name}; {args.steps} steps of batch 8 per run, "
             f"{args.channels} channels, l_max {args.l_max}, {args.layers} layers; "
             f"{os.environ.get('OMP_NUM_THREADS', '?')} thread(s).", "",
             "Test force MAE, meV/Å (mean ± std over seeds; n = seeds):", ""]
    sizes = sorted({r["k"] for r in records if r["features"] == args.features})
    lines += ["| method | " + " | ".join(f"k = {k}" for k in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
    for method in METHODS:
        cells = []
        for k in sizes:
            values = [r["forces_mae_meV_A"] for r in records
                      if r["features"] == args.features and r["method"] == method and r["k"] == k]
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.1f}{spread} (n={len(values)})" if values else "–")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(parse_args())
