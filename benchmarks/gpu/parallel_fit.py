"""The force-field recipes trained side by side on one GPU, then tested on the CPU (issue 20).

``fit`` runs eight ``zoo fit`` jobs at once on one accelerator (ethanol and malonaldehyde, with and
without DeNS, two-body and many-body backbones), each for ``--minutes`` of wall clock or
``--epochs`` epochs, two CPU threads each; a job that fails on the GPU is restarted on the CPU for
the time left. Each pair of jobs is packed into ``<out>/<pair>.tar`` (best.ckpt, metrics.csv,
log), so that eight files come back from a lent machine. ``test`` unpacks such tars and tests every
best.ckpt on its molecule's independent test trajectory with ``zoo test``, and writes
``results/parallel_fit.md`` (+ .json) with the epochs and steps each job made.

    python benchmarks/gpu/parallel_fit.py fit --minutes 8 --epochs 150 --out $OUT      # on the GPU machine
    python benchmarks/gpu/parallel_fit.py test --tars DIR --runs /tmp/parallel_fit      # here, on the CPU
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BACKBONE = "--model.init_args.model.init_args.backbone.init_args.interaction"
JOBS = {  # job: recipe and its overrides
    "eth_two": ["ethanol_forcefield"],
    "eth_two_dens": ["ethanol_forcefield_dens"],
    "mal_two": ["malonaldehyde_forcefield"],
    "mal_two_dens": ["malonaldehyde_forcefield_dens"],
    "eth_many": ["ethanol_forcefield", BACKBONE, "many_body"],
    "eth_many_dens": ["ethanol_forcefield_dens", BACKBONE, "many_body"],
    "mal_many": ["malonaldehyde_forcefield", BACKBONE, "many_body"],
    "mal_many_dens": ["malonaldehyde_forcefield_dens", BACKBONE, "many_body"],
}
PAIRS = {pair: [pair, f"{pair}_dens"] for pair in ("eth_two", "mal_two", "eth_many", "mal_many")}
KEPT = ("metrics.csv", "log.txt", "best.ckpt", "hparams.yaml")
EPOCH_LINE = re.compile(r"^epoch=(\d+) step=(\d+) .*?([\d.]+) s\)")


def say(*words):
    print(f"[{time.strftime('%H:%M:%S')}]", *words, flush=True)


def _start(job: str, accelerator: str, seconds: float, epochs: int, runs: Path):
    recipe, *overrides = JOBS[job]
    folder = runs / f"{job}_{accelerator}"
    folder.mkdir(parents=True, exist_ok=True)
    s = int(seconds)
    command = [sys.executable, "-m", "zoo.cli", "fit", "--config", recipe, *overrides,
               "--trainer.accelerator", accelerator, "--trainer.devices", "1", "--trainer.max_epochs", str(epochs),
               "--trainer.max_time", f"00:{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}",
               "--trainer.default_root_dir", str(folder), "--trainer.logger.init_args.save_dir", str(folder)]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    say("start", job, accelerator, f"{s} s")
    return folder, subprocess.Popen(command, stdout=open(folder / "log.txt", "w"), stderr=subprocess.STDOUT, env=env)


def fit(args) -> None:
    jobs = args.jobs or list(JOBS)
    began = time.time()
    deadline = began + 60 * args.minutes
    running = {job: _start(job, "gpu", 60 * args.minutes, args.epochs, args.runs) for job in jobs}
    finished: dict[str, list[Path]] = {}
    while running:
        time.sleep(5)
        for job, (folder, process) in list(running.items()):
            code = process.poll()
            if code is None:
                if time.time() > deadline + 60:
                    process.kill()
                continue
            del running[job]
            finished.setdefault(job, []).append(folder)
            say("ended", job, folder.name, "exit", code, f"after {time.time() - began:.0f} s")
            left = deadline - time.time() - 20
            if code != 0 and folder.name.endswith("_gpu") and left > 60:
                print((folder / "log.txt").read_text()[-3000:], flush=True)
                running[job] = _start(job, "cpu", left, args.epochs, args.runs)
    args.out.mkdir(parents=True, exist_ok=True)
    for pair, members in PAIRS.items():
        with tarfile.open(args.out / f"{pair}.tar", "w") as tar:
            for folder in (f for job in members for f in finished.get(job, [])):
                for path in folder.rglob("*"):
                    if path.is_file() and path.name in KEPT:
                        tar.add(path, arcname=str(path.relative_to(args.runs)))


def _progress(log: Path) -> dict:
    """Epochs, steps and seconds of a job's last epoch line (zoo.callbacks.EpochSummary)."""
    text = log.read_text()
    found = [EPOCH_LINE.match(line) for line in text.splitlines()]
    epoch, step, seconds = [m.groups() for m in found if m][-1]
    device = "GPU" if "GPU available: True (cuda), used: True" in text else "CPU"
    return {"epochs": int(epoch) + 1, "steps": int(step), "seconds": float(seconds), "device": device}


def _best_epoch(metrics: Path) -> int:
    rows = [r for r in csv.DictReader(open(metrics)) if r.get("val/forces_mae")]
    return int(min(rows, key=lambda r: float(r["val/forces_mae"]))["epoch"])


def test(args) -> None:
    args.runs.mkdir(parents=True, exist_ok=True)
    for tar in sorted(args.tars.glob("*.tar")):
        with tarfile.open(tar) as archive:
            archive.extractall(args.runs, filter="data")
    records = []
    for job, (recipe, *overrides) in JOBS.items():
        folders = sorted(args.runs.glob(f"{job}_*"))
        if not folders:
            continue
        folder = folders[-1]  # the CPU restart, where the GPU run failed
        out = args.runs / "test" / job
        subprocess.run([sys.executable, "-m", "zoo.cli", "test", "--config", recipe, *overrides,
                              "--ckpt_path", str(folder / "version_0" / "checkpoints" / "best.ckpt"),
                              "--trainer.default_root_dir", str(out), "--trainer.logger.init_args.save_dir",
                              str(out)], capture_output=True, text=True, check=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
        tested = next(csv.DictReader(open(max(out.rglob("metrics.csv"), key=os.path.getmtime))))
        record = {"job": job, "recipe": recipe, "interaction": overrides[-1] if overrides else "two_body",
                  **_progress(folder / "log.txt"), "best_epoch": _best_epoch(folder / "version_0" / "metrics.csv"),
                  "test_forces_mae": float(tested["test/forces_mae"]) * 1000,
                  "test_energy_mae": float(tested["test/energy_mae"]) * 1000}
        record["steps_per_s"] = round(record["steps"] / record["seconds"], 2)
        records.append(record)
        say(job, f"test force MAE {record['test_forces_mae']:.1f} meV/Å")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "parallel_fit.json").write_text(json.dumps(records, indent=1) + "\n")
    lines = ["# The force-field recipes side by side on one GPU", "",
             f"`python benchmarks/gpu/parallel_fit.py test --tars {args.tars_label}` (the tars of `parallel_fit.py "
             f"fit`: {args.note}). Test force MAE in meV/Å and energy MAE in meV on the molecule's independent "
             "test trajectory (200 frames), best validation epoch.", "",
             "| job | recipe | interaction | device | epochs | steps/s | best epoch | force MAE | energy MAE |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['job']} | {r['recipe']} | {r['interaction']} | {r['device']} | {r['epochs']} | {r['steps_per_s']} "
              f"| {r['best_epoch']} | {r['test_forces_mae']:.1f} | {r['test_energy_mae']:.1f} |" for r in records]
    (results / "parallel_fit.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("fit", help="train the jobs side by side (on the GPU machine)")
    run.add_argument("--minutes", type=float, default=8.0)
    run.add_argument("--epochs", type=int, default=150, help="max_epochs (DeNS's weight decays over them)")
    run.add_argument("--jobs", nargs="+", choices=list(JOBS), help="default: all eight")
    run.add_argument("--runs", type=Path, default=Path("/tmp/parallel_fit"))
    run.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "parallel_fit_out")))
    check = commands.add_parser("test", help="test every job's best.ckpt on the CPU; results/parallel_fit.md")
    check.add_argument("--tars", type=Path, required=True)
    check.add_argument("--runs", type=Path, default=Path("/tmp/parallel_fit"))
    check.add_argument("--tars-label", default="DIR", help="how the results page names --tars")
    check.add_argument("--note", default="", help="where and how the fit ran, for the results page")
    args = parser.parse_args(argv)
    fit(args) if args.command == "fit" else test(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
