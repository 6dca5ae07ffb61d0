"""Issue 19, item 4: self-consistency training (SCT) against its supervised-only control, with seeds.

Both arms start from the published supervised model ``hamiltonian-qm9-b3lyp5-def2svp`` (recipes
``hamiltonian_qm9_occupied_sct`` and ``hamiltonian_qm9_occupied_control``: same optimizer, steps and
start) and train on the same labelled molecules: the 197 ``small`` QM9 molecules (``--labelled``;
split 90/10 with the recipes' seed 0, so every seed sees the same data), which the published model
saw among its 1094. The SCT arm adds the SCT loss on the unlabelled larger molecules
(``large_unlabelled.extxyz``, the recipe's 192); the seed (``--seed_everything``) draws the batches.
Each (arm, seed) is fitted, tested and exported into ``runs/sct_study/<arm>_seed<seed>``, then
measured by ``evaluate.py`` on both out-of-distribution sets: the 49 held-out large QM9 molecules
and the 41 drug-like molecules (H errors on every molecule, SCF from the guess and from MINAO on the
first ``--scf``). One record per (arm, seed, set) goes to ``results/sct_study.json`` as it finishes;
a rerun skips what is recorded, resumes a fit from its ``last.ckpt`` and an evaluation from its
partial file, and records an evaluation already written (one set can be evaluated on another core
by its ``evaluate.py`` command from ``--dry-run``); a set whose label file lacks molecules of its
source (an interrupted ``zoo label``) is left out with the reason, not measured on fewer.
``report`` writes ``results/sct_study.md``: each arm's mean ± std, and the paired SCT − control
difference per seed.

Needs the labels of ``make data-qm9-hamiltonian`` (small, and large_test before either arm's fit:
the recipes test on it) and ``make data-druglike-hamiltonian``. Per seed: the SCT arm ~1.5 h on one thread, the control
minutes, each evaluation ~30 min with ``--scf 12``. Run the control's first seed before the SCT arm
starts on another core: it writes the cache of the labelled molecules' base Hamiltonians
(``base_file``, one writer at a time) that every later run reads.

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/sct_study.py run --arm control --seeds 0 1 2
    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/sct_study.py run --arm sct --seeds 0 1 2
    python benchmarks/hamiltonian/sct_study.py report
    python benchmarks/hamiltonian/sct_study.py run --arm sct --seeds 0 --dry-run   # the commands only
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from zoo._files import append_json_record

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
RECIPES = {"sct": "hamiltonian_qm9_occupied_sct", "control": "hamiltonian_qm9_occupied_control"}
SETS = {"large_qm9": "data/qm9_hamiltonian/large_test_b3lyp5_def2svp.h5",
        "druglike": "data/druglike/druglike_b3lyp5_def2svp.h5"}
#: the geometries each set's labels were made from (``zoo label`` keeps what it finished, so an
#: interrupted labelling leaves a file of fewer molecules)
SOURCES = {"large_qm9": "data/qm9_hamiltonian/large_test.extxyz", "druglike": "data/druglike/druglike_xtb.extxyz"}
LABELLED = "data/qm9_hamiltonian/small_b3lyp5_def2svp.h5"
#: the figures of an evaluation kept in a record, and the report's columns (lower is better for all
#: but the orbital cosine)
FIGURES = {"hamiltonian_mae_all": "H MAE (µEh)", "orbital_energy_mae": "ε_occ MAE (µEh)",
           "orbital_cosine": "ψ cosine", "scf_cycle_ratio": "SCF cycles / MINAO's",
           "wall_ratio_with_guess": "wall with guess / MINAO's"}


def records(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []


def incomplete(name: str) -> str | None:
    """Why the set's label file cannot be evaluated yet, or None when it holds every molecule."""
    import ase.io
    import h5py

    from zoo.data.readers.hamiltonian import GROUP

    labels, source = ROOT / SETS[name], ROOT / SOURCES[name]
    wanted = len(ase.io.read(source, index=":"))
    if not labels.is_file():
        return f"no labels at {labels}"
    with h5py.File(labels, "r") as handle:
        held = len(handle[GROUP])
    return None if held >= wanted else f"{labels} holds {held} of the {wanted} molecules of {source}"


def run_folder(arm: str, seed: int) -> Path:
    return ROOT / "runs" / "sct_study" / f"{arm}_seed{seed}"


def training_arguments(arm: str, seed: int, labelled: str) -> list[str]:
    folder = run_folder(arm, seed)
    return ["--config", RECIPES[arm], "--seed_everything", str(seed), "--data.init_args.source", json.dumps([labelled]),
            "--trainer.default_root_dir", str(folder), "--trainer.logger.init_args.save_dir", str(folder)]


def commands(arm: str, seed: int, args) -> list[list[str]]:
    """The fit (resumed from last.ckpt when the run has one), the test with its export, and one
    evaluation per set."""
    zoo = [sys.executable, "-m", "zoo.cli"]
    training = training_arguments(arm, seed, args.labelled)
    resume = ["--ckpt_path", "last"] if list(run_folder(arm, seed).glob("version_*/checkpoints/last.ckpt")) else []
    steps = [[*zoo, "fit", *training, *resume], [*zoo, "test", *training, "--ckpt_path", "last", "--export"]]
    for name, data in SETS.items():
        steps.append([sys.executable, str(Path(__file__).parent / "evaluate.py"), "--model",
                      str(run_folder(arm, seed) / "pretrained"), "--data", str(ROOT / data), "--scf", str(args.scf),
                      "--json", str(run_folder(arm, seed) / f"evaluation_{name}.json")])
    return steps


def run(args) -> int:
    out = Path(args.out)
    for seed in args.seeds:
        done = {r["set"] for r in records(out) if r["arm"] == args.arm and r["seed"] == seed}
        if done >= set(SETS):
            print(f"sct_study: {args.arm} seed {seed} is recorded")
            continue
        steps = commands(args.arm, seed, args)
        if args.dry_run:
            print("\n".join(" ".join(step) for step in steps))
            continue
        exported = run_folder(args.arm, seed) / "pretrained"
        for step in steps[:2] if not exported.exists() else []:
            print(f"sct_study: {args.arm} seed {seed}: zoo {step[3]} ...", flush=True)
            subprocess.run(step, cwd=ROOT, check=True)
        for name, step in zip(SETS, steps[2:]):
            if name in done:
                continue
            if (reason := incomplete(name)) is not None:
                print(f"sct_study: {args.arm} seed {seed}: {name} not evaluated: {reason} (label it first; the "
                      "module's docstring says how)", flush=True)
                continue
            if not Path(step[-1]).exists():  # written whole at its end, by this run or one started by hand
                subprocess.run(step, cwd=ROOT, check=True)
            figures = next(iter(json.loads(Path(step[-1]).read_text(encoding="utf-8"))["models"].values()))
            append_json_record(out, {"arm": args.arm, "seed": seed, "set": name, "labelled": args.labelled,
                                     "scf": args.scf, **{key: figures[key] for key in (*FIGURES, "test_frames", "scf_frames")}})
    return 0


def _mean_std(values: list[float]) -> str:
    spread = f" ± {statistics.stdev(values):.3g}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4g}{spread} ({len(values)})"


def report(args) -> int:
    found = records(Path(args.out))
    lines = ["# Self-consistency training against its supervised-only control, by seed", "",
             f"`python benchmarks/hamiltonian/sct_study.py report` from `{Path(args.out).name}` (the module's docstring "
             "says how each record was made). Mean ± std over seeds (number of seeds).", ""]
    for name in SETS:
        at = [r for r in found if r["set"] == name]
        if not at:
            continue
        lines += [f"## {name}", "", "| arm | " + " | ".join(FIGURES.values()) + " |",
                  "|---|" + "---:|" * len(FIGURES)]
        for arm in RECIPES:
            rows = [r for r in at if r["arm"] == arm]
            if rows:
                lines.append(f"| {arm} | " + " | ".join(_mean_std([r[k] for r in rows]) for k in FIGURES) + " |")
        paired = sorted({r["seed"] for r in at if r["arm"] == "sct"} & {r["seed"] for r in at if r["arm"] == "control"})
        if paired:
            lines += ["", "Paired SCT − control by seed (negative: SCT lower):", "",
                      "| seed | " + " | ".join(FIGURES.values()) + " |", "|---|" + "---:|" * len(FIGURES)]
            by = {(r["arm"], r["seed"]): r for r in at}
            for seed in paired:
                sct, control = by["sct", seed], by["control", seed]
                lines.append(f"| {seed} | " + " | ".join(f"{sct[k] - control[k]:+.4g}" for k in FIGURES) + " |")
        lines.append("")
    Path(args.out).with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(RESULTS / "sct_study.json"))
    sub = parser.add_subparsers(dest="command", required=True)
    runs = sub.add_parser("run", help="fit, test, export and evaluate one arm for the seeds")
    runs.add_argument("--arm", choices=sorted(RECIPES), required=True)
    runs.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    runs.add_argument("--labelled", default=LABELLED, help="the labelled molecules of both arms")
    runs.add_argument("--scf", type=int, default=12, help="molecules of each set to run SCF on (both guesses)")
    runs.add_argument("--dry-run", action="store_true", help="print the commands only")
    sub.add_parser("report", help="write results/sct_study.md")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else report(args)


if __name__ == "__main__":
    sys.exit(main())
