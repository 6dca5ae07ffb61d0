"""The peer comparison as a curve (issue 20): zoo (two-body and many-body backbones) against
mace-torch at equal wall clock, for several budgets, seeds and molecules.

For every molecule, budget (minutes) and seed, three training runs on the same 950/50 split of the
molecule's training file (one split file shared by all three, ``split_seed<seed>.npz``):

- ``baseline``: the recipe ``<molecule>_forcefield`` (two-body backbone), ``study.py run`` with
  ``--max-time`` set to the budget, then measured on the independent test trajectory with a short
  MD run (``--md-ps``);
- ``baseline-many_body``: the same recipe with ``interaction: many_body`` (MACE's product basis);
- ``baseline-many_body-anneal``: that, with the ``anneal`` add-on (the learning rate decayed
  linearly to zero over the budget in place of the plateau schedule);
- ``mace``: ``mace_compare.py`` on the split file, at MACE's matched size, for the same budget.

The runs go through a queue with ``--parallel`` slots (default 2: one single-threaded run per core
of this machine, so every run shares the machine with one other, zoo and MACE alike). Each run's
record is appended to ``results/peer_curve/<molecule>/{zoo,mace}_<minutes>min.json`` as it ends,
and a run already recorded is skipped, so an interrupted curve resumes. The table (force/energy
MAE, training structures/s, MD steps/s and the zoo/MACE ratios) goes to
``results/peer_curve.md`` and the figure to ``results/peer_curve.png``.

    OMP_NUM_THREADS=1 python benchmarks/dens/peer_curve.py --molecules ethanol --minutes 5 20 60 --seeds 0
    python benchmarks/dens/peer_curve.py --table-only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from zoo._files import append_json_record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
CURVE = RESULTS / "peer_curve"
#: zoo's runs: (backbone interaction, recipe add-ons)
ZOO_RUNS = {"baseline": ("two_body", ()), "baseline-many_body": ("many_body", ()),
            "baseline-many_body-anneal": ("many_body", ("anneal",))}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", nargs="+", default=["ethanol"], choices=["ethanol", "malonaldehyde"])
    parser.add_argument("--minutes", nargs="+", type=float, default=[5, 20, 60])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--models", nargs="+", default=["baseline-many_body", "mace", "baseline"],
                        choices=[*ZOO_RUNS, "mace"])
    parser.add_argument("--parallel", type=int, default=2, help="runs at once (one thread each)")
    parser.add_argument("--md-ps", type=float, default=0.1)
    parser.add_argument("--table-only", action="store_true")
    return parser.parse_args(argv)


def data_files(molecule: str) -> tuple[str, str]:
    stem = ROOT / "data" / molecule / f"{molecule}_pbe_def2svp"
    return f"{stem}_train.extxyz", f"{stem}_test.extxyz"


def split_file(molecule: str, seed: int) -> Path:
    """The 950/50 random split of the seed, saved once and shared by every run of that seed."""
    import ase.io

    from zoo.data.splits import make_split

    path = CURVE / molecule / f"split_seed{seed}.npz"
    if not path.is_file():
        n = len(ase.io.read(data_files(molecule)[0], index=":"))
        path.parent.mkdir(parents=True, exist_ok=True)
        make_split({"method": "random", "sizes": [950, 50, 0], "seed": seed}, n=n).save(path)
    return path


def _budget(minutes: float) -> str:
    return f"{minutes:g}min"


def _budgets(molecule_folder: Path) -> list[float]:
    """The budgets (minutes) with records in a molecule's folder (``zoo_20min.json``: 20)."""
    return sorted({float(p.stem.split("_")[1][:-len("min")]) for p in molecule_folder.glob("*_*min.json")})


def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def _done(molecule: str, minutes: float, seed: int, model: str) -> bool:
    kind = "mace" if model == "mace" else "zoo"
    records = _records(CURVE / molecule / f"{kind}_{_budget(minutes)}.json")
    return any(r["seed"] == seed and (model == "mace" or r["variant"] == model) for r in records)


def command(molecule: str, minutes: float, seed: int, model: str, md_ps: float) -> list[str]:
    train, test = data_files(molecule)
    split = str(split_file(molecule, seed))
    runs = RESULTS / "runs" / "peer_curve" / molecule  # git ignores runs/
    if model == "mace":
        return [sys.executable, str(HERE / "mace_compare.py"), split, "--seed", str(seed), "--seconds", str(60 * minutes),
                "--train", train, "--test", test, "--md-ps", str(md_ps),
                "--recipe", f"{molecule}_forcefield",
                "--work", str(runs / f"mace_{_budget(minutes)}_seed{seed}"),
                "--out", str(CURVE / molecule / f"mace_{_budget(minutes)}.json")]
    seconds = round(60 * minutes)
    max_time = f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return [sys.executable, str(HERE / "study.py"), "--molecule", molecule, "--train", train, "--test", test,
            "--md-ps", str(md_ps), "--out", str(runs / _budget(minutes) / "zoo.json"),
            "run", "--variant", "baseline", "--seed", str(seed), "--max-time", max_time,
            "--interaction", ZOO_RUNS[model][0], "--split-file", split, "--add-on", *ZOO_RUNS[model][1]]


def run_queue(jobs: list[tuple], parallel: int, md_ps: float) -> None:
    """Run the jobs ``parallel`` at a time; each record is appended as its run ends."""
    pending, running = list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            molecule, minutes, seed, model = job = pending.pop(0)
            log = CURVE / molecule / f"{model}_{_budget(minutes)}_seed{seed}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            handle = open(log, "w")
            print(f"[peer curve] start {molecule} {_budget(minutes)} seed {seed} {model} (log {log})", flush=True)
            process = subprocess.Popen(command(molecule, minutes, seed, model, md_ps), stdout=handle,
                                       stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
            running.append((job, process, handle, log, time.time()))
        time.sleep(5)
        for item in list(running):
            (molecule, minutes, seed, model), process, handle, log, start = item
            if process.poll() is None:
                continue
            running.remove(item)
            handle.close()
            if process.returncode != 0:
                print(f"[peer curve] FAILED {molecule} {_budget(minutes)} seed {seed} {model}: see {log}", flush=True)
                continue
            if model != "mace":  # study.py prints its record; mace_compare.py writes its own file
                record = json.loads(log.read_text().rsplit("RESULT ", 1)[1].splitlines()[0])
                record["load_average"] = os.getloadavg()[0]
                append_json_record(CURVE / molecule / f"zoo_{_budget(minutes)}.json", record)
            print(f"[peer curve] done {molecule} {_budget(minutes)} seed {seed} {model} "
                  f"in {time.time() - start:.0f} s", flush=True)


def _mean(values: list[float]) -> str:
    if not values:
        return "–"
    spread = f" ± {statistics.stdev(values):.2g}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3g}{spread}"


def table() -> str:
    lines = ["# zoo against mace-torch at equal wall clock",
             "",
             "Each run: one thread, two runs at a time on a 2-core machine; 950 training / 50 validation",
             "structures of the molecule's 500 K trajectory (PBE/def2-SVP), tested on an independent",
             "trajectory. Force MAE in meV/Å, energy MAE in meV; ratio = zoo / MACE (below 1: zoo better),",
             "each seed against MACE's run of the same seed (same split, run side by side), mean ± std over seeds.",
             "`python benchmarks/dens/peer_curve.py` (see its docstring) makes every row.", "",
             "| molecule | budget | model | seeds | epochs | force MAE | energy MAE | train structures/s "
             "| MD steps/s | force MAE ratio | structures/s ratio |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for molecule_folder in sorted(p for p in CURVE.iterdir() if p.is_dir()) if CURVE.is_dir() else []:
        for minutes in _budgets(molecule_folder):
            mace = _records(molecule_folder / f"mace_{_budget(minutes)}.json")
            zoo = _records(molecule_folder / f"zoo_{_budget(minutes)}.json")
            mace_by_seed = {r["seed"]: r for r in mace}
            rows = [(name, [r for r in zoo if r["variant"] == name], "forces_mae_meV_A", "energy_mae_meV",
                     "train_structures_per_s", "md_steps_per_s", "epochs") for name in ZOO_RUNS]
            rows.append(("mace", mace, "mace_forces_mae_meV_A", "mace_energy_mae_meV", "mace_train_structures_per_s",
                         "mace_md_steps_per_s", "mace_epochs_completed"))
            for name, records, force, energy, speed, md, epochs in rows:
                if not records:
                    continue
                forces = [r[force] for r in records]
                speeds = [r[speed] for r in records]
                # each seed against MACE's run of the same seed: same split, side by side on the machine
                paired = [(r, mace_by_seed[r["seed"]]) for r in records if r["seed"] in mace_by_seed]
                ratio = _mean([r[force] / m["mace_forces_mae_meV_A"] for r, m in paired]) if name != "mace" else "–"
                speed_ratio = _mean([r[speed] / m["mace_train_structures_per_s"] for r, m in paired]) \
                    if name != "mace" else "–"
                lines.append(f"| {molecule_folder.name} | {minutes:g} min | {name} | {len(records)} | "
                             f"{_mean([r.get(epochs, float('nan')) for r in records])} | {_mean(forces)} | "
                             f"{_mean([r[energy] for r in records])} | {_mean(speeds)} | "
                             f"{_mean([r[md] for r in records if md in r])} | {ratio} | {speed_ratio} |")
    return "\n".join(lines) + "\n"


def figure(path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    molecules = sorted(p for p in CURVE.iterdir() if p.is_dir())
    fig, axes = plt.subplots(1, max(len(molecules), 1), figsize=(5 * max(len(molecules), 1), 4), squeeze=False)
    for ax, folder in zip(axes[0], molecules):
        curves, budgets = {}, _budgets(folder)  # curves: label -> [(minutes, mean, std)]
        for minutes in budgets:
            zoo = _records(folder / f"zoo_{_budget(minutes)}.json")
            mace = _records(folder / f"mace_{_budget(minutes)}.json")
            # only the seeds both sides ran: a seed's split and machine load are shared by its pair
            paired = {r["seed"] for r in zoo} & {r["seed"] for r in mace}
            series = [(label, [r["forces_mae_meV_A"] for r in zoo if r["variant"] == key and r["seed"] in paired])
                      for label, key in (("zoo two-body", "baseline"), ("zoo many-body", "baseline-many_body"),
                                         ("zoo many-body, annealed", "baseline-many_body-anneal"))]
            series.append(("MACE", [r["mace_forces_mae_meV_A"] for r in mace if r["seed"] in paired]))
            for label, values in series:
                if values:
                    spread = statistics.stdev(values) if len(values) > 1 else 0.0
                    curves.setdefault(label, []).append((minutes, statistics.mean(values), spread))
        for label, points in curves.items():
            ax.errorbar(*zip(*points), marker="o", capsize=3, label=label)
        ax.set(xscale="log", yscale="log", xlabel="training wall clock (CPU minutes, 1 thread)",
               ylabel="test force MAE (meV/Å)", title=folder.name)
        ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.legend()
    fig.text(0.5, 0.01, "mean ± std over the seeds both zoo and MACE ran", ha="center", va="bottom", fontsize="small")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=120)


def main(argv=None) -> None:
    args = parse_args(argv)
    if not args.table_only:
        jobs = [(molecule, minutes, seed, model) for molecule in args.molecules for minutes in args.minutes
                for seed in args.seeds for model in args.models if not _done(molecule, minutes, seed, model)]
        run_queue(jobs, args.parallel, args.md_ps)
    (RESULTS / "peer_curve.md").write_text(table())
    figure(RESULTS / "peer_curve.png")
    print((RESULTS / "peer_curve.md").read_text())


if __name__ == "__main__":
    main()
