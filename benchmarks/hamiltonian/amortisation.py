"""Study 5(iii): what does it cost to reach a test error, by SCT or by labelling and supervision?

Self-consistency training (SCT) needs no labels but pays for a Fock build and its response at
every step; supervised training is cheap per step but needs every structure labelled by a full
SCF first. On the N = 400 water training frames of the recipes hamiltonian_water*, this measures

1. the labelling cost: ``zoo label``'s own per-structure computation (full SCF at b3lyp5/def2-SVP,
   grid 3, conv_tol 1e-10, Fock/overlap/density/orbital energies) timed on ``--label-sample``
   training frames, times N;
2. the supervised learning curve (hamiltonian_water) and the SCT learning curve
   (hamiltonian_water_sct, no labels, targets on a level-1 grid), both from scratch,
   each on one core, as validation H MAE against the seconds spent in training steps
   (``zoo.callbacks.TrainingTime``; validation is measurement only and not counted);

and reports, for each target error, the wall-clock to reach it: labelling + supervised training
versus SCT training. Both runs go in parallel, one thread each:

    python benchmarks/hamiltonian/amortisation.py --minutes 25    # ~27 minutes on 2 cores

Writes results/amortisation.{json,md,png}. Rerun with ``--report-only`` to rebuild the report
from the runs' CSV logs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
DATA = ROOT / "data" / "water" / "water_b3lyp5_def2svp.h5"
#: the packaged recipes (zoo.recipes)
RECIPES = {"supervised": "hamiltonian_water", "sct": "hamiltonian_water_sct"}
N_TRAIN = 400
TARGETS_UEH = [30000, 20000, 10000, 5000, 3000, 2000, 1000, 700, 500, 400]


def parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=25.0, help="training wall-clock of each run")
    parser.add_argument("--label-sample", type=int, default=20, help="training frames to time the labelling on")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "amortisation")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--report-only", action="store_true")
    return parser.parse_args()


def labelling_seconds_per_structure(sample: int) -> dict:
    """Time zoo label's per-structure work on the first ``sample`` training frames (one thread)."""
    import numpy as np
    from ase import Atoms
    from pyscf import lib

    from zoo.data import keys, read_hamiltonian_h5
    from zoo.data.splits import make_split
    from zoo.datagen.label_task import compute_labels
    from zoo.qc import LevelOfTheory

    lib.num_threads(1)
    dataset = read_hamiltonian_h5(DATA)
    train = make_split({"method": "random", "sizes": [400, 50, 50], "seed": 0}, n=len(dataset)).train
    level = LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=3)
    seconds, cycles = [], []
    for index in train[:sample].tolist():
        data = dataset[index]
        atoms = Atoms(numbers=data[keys.ATOMIC_NUMBERS].numpy(), positions=data[keys.POSITIONS].numpy())
        start = time.perf_counter()
        result = compute_labels(atoms, level, ["fock", "overlap", "density_matrix", "orbital_energies"])
        seconds.append(time.perf_counter() - start)
        cycles.append(result["cycles"])
    return {"frames": sample, "seconds_mean": statistics.mean(seconds), "seconds_stdev": statistics.stdev(seconds),
            "cycles_mean": float(np.mean(cycles))}


def train(name: str, minutes: float, runs: Path) -> subprocess.Popen:
    folder = runs / name
    limit = f"00:00:{int(minutes):02d}:{int(round(60 * (minutes % 1))):02d}"
    command = [sys.executable, "-m", "zoo.cli", "fit", "--config", RECIPES[name],
               "--trainer.max_time", limit, "--trainer.max_epochs", "10000",
               "--trainer.default_root_dir", str(folder), "--trainer.logger.init_args.save_dir", str(folder),
               "--trainer.callbacks+=zoo.callbacks.TrainingTime"]
    log = open(runs / f"{name}.log", "w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def curve(runs: Path, name: str) -> list[dict]:
    """(training seconds, validation metrics) at every validation of the run's newest CSV log."""
    logs = sorted((runs / name).glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1]))
    if not logs:
        raise FileNotFoundError(f"no metrics.csv under {runs / name}; run the study first")
    points = []
    with logs[-1].open() as handle:
        for row in csv.DictReader(handle):
            if row.get("time/train_s") and row.get("val/hamiltonian_mae_all"):
                points.append({"epoch": int(row["epoch"]), "train_s": float(row["time/train_s"]),
                               **{k: float(row[f"val/{k}"]) for k in
                                  ("hamiltonian_mae_all", "orbital_energy_mae", "orbital_cosine")}})
    return points


def first_reach(points: list[dict], target: float, offset: float = 0.0) -> float | None:
    for point in points:
        if point["hamiltonian_mae_all"] <= target:
            return offset + point["train_s"]
    return None


def report(args, labelling: dict) -> dict:
    curves = {name: curve(args.runs, name) for name in RECIPES}
    label_s = labelling["seconds_mean"] * N_TRAIN
    rows = []
    for target in TARGETS_UEH:
        supervised = first_reach(curves["supervised"], target, label_s)
        sct = first_reach(curves["sct"], target)
        rows.append({"target_ueh": target, "labels_plus_supervised_s": supervised, "sct_s": sct})
    best = {name: min(points, key=lambda p: p["hamiltonian_mae_all"]) for name, points in curves.items()}
    result = {"labelling": {**labelling, "n_train": N_TRAIN, "total_s": label_s}, "curves": curves,
              "time_to_target": rows, "best": best, "minutes": args.minutes,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, one thread per run"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "amortisation.json").write_text(json.dumps(result, indent=1) + "\n")
    _plot(curves, label_s, args.out / "amortisation.png")
    (args.out / "amortisation.md").write_text(_markdown(result))
    return result


def _fmt(seconds):
    return "not reached" if seconds is None else f"{seconds / 60:.1f} min"


def _markdown(result) -> str:
    lab = result["labelling"]
    lines = [
        "# Study 5(iii): amortisation of self-consistency training (water, N = 400)",
        "",
        "Command: `python benchmarks/hamiltonian/amortisation.py --minutes "
        f"{result['minutes']:g}` ({result['machine']}; both runs in parallel).",
        "",
        f"- Labelling (what `zoo label` computes per structure: full SCF b3lyp5/def2-SVP, grid 3, conv_tol 1e-10), "
        f"timed on {lab['frames']} training frames: {lab['seconds_mean']:.2f} ± {lab['seconds_stdev']:.2f} s per "
        f"frame ({lab['cycles_mean']:.1f} SCF cycles), so {lab['total_s'] / 60:.1f} min for the N = {lab['n_train']} "
        "training frames.",
        "- Supervised: `hamiltonian_water` from scratch; its curve is shifted by the labelling time.",
        "- SCT: `hamiltonian_water_sct` from scratch, no labels (targets on a level-1 grid).",
        "- Error: validation H MAE (50 frames, µEh) against the seconds spent in training steps "
        "(`zoo.callbacks.TrainingTime`); validation itself is not counted.",
        "",
        "| target H MAE (µEh) | labels + supervised | SCT |",
        "|---:|---:|---:|",
    ]
    for row in result["time_to_target"]:
        lines.append(f"| {row['target_ueh']} | {_fmt(row['labels_plus_supervised_s'])} | {_fmt(row['sct_s'])} |")
    lines += ["", "| run | best validation H MAE (µEh) | ε_occ MAE (µEh) | at training time | epoch |",
              "|---|---:|---:|---:|---:|"]
    for name, point in result["best"].items():
        lines.append(f"| {name} | {point['hamiltonian_mae_all']:.1f} | {point['orbital_energy_mae']:.1f} | "
                     f"{_fmt(point['train_s'])} | {point['epoch']} |")
    lines += ["", "![validation H MAE against wall-clock](amortisation.png)", ""]
    return "\n".join(lines)


def _plot(curves, label_s, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, offset, style in (("supervised", label_s, "-o"), ("sct", 0.0, "-s")):
        points = curves[name]
        label = "labelling + supervised" if name == "supervised" else "SCT (no labels)"
        ax.plot([(offset + p["train_s"]) / 60 for p in points], [p["hamiltonian_mae_all"] for p in points],
                style, ms=3, label=label)
    ax.axvline(label_s / 60, color="grey", ls=":", lw=1, label="labelling done")
    ax.set_xlabel("wall-clock, one core (min)")
    ax.set_ylabel("validation H MAE (µEh)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parse()
    args.runs.mkdir(parents=True, exist_ok=True)
    timing = args.runs / "labelling.json"
    if not args.report_only:
        processes = [train(name, args.minutes, args.runs) for name in RECIPES]
        timing.write_text(json.dumps(labelling_seconds_per_structure(args.label_sample)))
        for name, process in zip(RECIPES, processes):
            if process.wait() != 0:
                raise SystemExit(f"the {name} run failed; see {args.runs / (name + '.log')}")
    result = report(args, json.loads(timing.read_text()))
    print(json.dumps(result["time_to_target"], indent=1))


if __name__ == "__main__":
    main()
