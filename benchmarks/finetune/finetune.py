"""Data efficiency of fine-tuning (issue 22): force MAE on a molecule kept out of pretraining against
the number N of DFT training frames, fine-tuned from a pretrained force field versus trained from
scratch, at equal CPU time; and the pretrained model as it is (zero-shot).

Every run trains on N frames of ``data/<molecule>/<molecule>_pbe_def2svp_train.extxyz`` for
``--minutes`` of wall clock on one thread, keeps its best validation epoch, and is tested on the
independent trajectory of ``..._test.extxyz``. The seed fixes 50 validation frames; the N training
frames are chosen from the rest (the pool: malonaldehyde's 950, paracetamol's 250; structures only,
no label is read to choose) by ``--select``: ``random``, ``fps`` (farthest point) or ``d-optimal``
(greedy D-optimal design, :mod:`zoo.selection`), the last two on the features of ``--select-model``
(a registry name; default: the run's pretrained model, or the Coulomb-matrix descriptor for
``scratch``). ``scratch`` trains the molecule's packaged recipe (``<molecule>_forcefield``); a
registry name or model folder fine-tunes that model: its own architecture and weights (the task's
``pretrained``, backbone loaded whole, heads re-fitted; a multi-fidelity model's levels become the
molecule's one), the recipe's data and loss (no DeNS, as from scratch), learning rate ``--lr``.

    python benchmarks/finetune/finetune.py run --init scratch ethanol-dens-pbe-def2svp \\
        --frames 25 50 100 250 950 --seeds 0 1 2 --minutes 10
    python benchmarks/finetune/finetune.py run --init ethanol-dens-pbe-def2svp --select d-optimal fps random \
        --frames 25 50 100 --seeds 0 1 2 --minutes 10
    python benchmarks/finetune/finetune.py zero-shot --init ethanol-dens-pbe-def2svp
    python benchmarks/finetune/finetune.py table        # results/finetune.md and .png

Records are appended to ``results/finetune.json`` (malonaldehyde) or ``results/finetune_<molecule>.json``
as runs end; a rerun skips what is recorded, so an interrupted queue resumes. ``table`` writes the
records' table and figure beside them (``.md``, ``.png``). Run folders go to ``results/runs/``
(ignored by git).

    python benchmarks/finetune/finetune.py --molecule paracetamol run --init organic-dens-gfn2-xtb scratch \
        --frames 25 50 100 250 --seeds 0 1 2 --minutes 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from zoo._files import append_json_record

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RESULTS = HERE / "results"
VALIDATION_FRAMES = 50
SELECTIONS = ("random", "fps", "d-optimal")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecule", default="malonaldehyde")
    parser.add_argument("--records", type=Path, default=None,
                        help="JSON file of results (appended); default results/finetune[_<molecule>].json")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="train and test: every init x frames x seed not yet recorded")
    run.add_argument("--init", nargs="+", required=True, help="'scratch' and/or registry names to fine-tune")
    run.add_argument("--frames", nargs="+", type=int, default=[25, 50, 100, 250, 950])
    run.add_argument("--seeds", nargs="+", type=int, default=[0])
    run.add_argument("--minutes", type=float, default=10.0, help="wall clock of each run's training")
    run.add_argument("--lr", type=float, default=1e-3, help="learning rate of fine-tuning (scratch: the recipe's)")
    run.add_argument("--backbone", nargs="+", default=[], metavar="KEY=VALUE",
                     help="scratch only: backbone arguments that differ from the recipe's, e.g. channels=8 (smoke "
                          "tests) or interaction=many_body; the run is recorded as scratch(KEY=VALUE,...)")
    run.add_argument("--select", nargs="+", default=["random"], choices=SELECTIONS,
                     help="how the N training frames are chosen from the pool")
    run.add_argument("--select-model", default=None, help="features for fps and d-optimal (default: see above)")
    zero = commands.add_parser("zero-shot", help="test pretrained models as they are")
    zero.add_argument("--init", nargs="+", required=True)
    commands.add_parser("table", help="the records' table (.md) and figure (.png) beside them")
    args = parser.parse_args(argv)
    if args.records is None:  # malonaldehyde's came first and keep their file's name
        suffix = "" if args.molecule == "malonaldehyde" else f"_{args.molecule}"
        args.records = RESULTS / f"finetune{suffix}.json"
    return args


def data_files(molecule: str) -> tuple[Path, Path]:
    stem = ROOT / "data" / molecule / f"{molecule}_pbe_def2svp"
    return Path(f"{stem}_train.extxyz"), Path(f"{stem}_test.extxyz")


def records(path: Path, molecule: str | None = None) -> list[dict]:
    """The records of ``path``, those of ``molecule`` only if given."""
    found = json.loads(path.read_text()) if path.is_file() else []
    return [r for r in found if molecule is None or r["molecule"] == molecule]


def training_split(molecule: str, frames: int, seed: int, select: str, feature_model: str | None,
                   folder: Path) -> Path:
    """The run's split file: 50 validation frames fixed by the seed, N training frames chosen by
    ``select`` from the rest (the structures alone: no label is read to choose)."""
    import ase.io
    import numpy as np

    from zoo.data.splits import Split
    from zoo.selection import descriptor_features, farthest_point, greedy_d_optimal, model_features

    structures = ase.io.read(data_files(molecule)[0], index=":")
    order = np.random.default_rng(seed).permutation(len(structures))
    val, pool = order[:VALIDATION_FRAMES], order[VALIDATION_FRAMES:]
    if frames > len(pool):
        raise ValueError(f"{frames} training frames asked for, the pool has {len(pool)}")
    if select == "random":
        chosen = pool[:frames]
    else:
        candidates = [structures[i] for i in pool]
        if feature_model is None:
            features = descriptor_features(candidates)
        else:
            import zoo

            features = model_features(zoo.load(feature_model), candidates)
        picked = greedy_d_optimal(features, frames) if select == "d-optimal" else farthest_point(features, frames,
                                                                                                    seed=seed)
        chosen = pool[np.asarray(picked)]
    path = folder / "training_split.npz"
    Split(chosen, val, np.array([], dtype=np.int64), method=f"finetune-{select}",
          params={"seed": seed, "frames": frames, "features": feature_model or "coulomb"},
          n=len(structures)).save(path)
    return path


def run_config(molecule: str, init: str, frames: int, seed: int, minutes: float, lr: float,
               backbone: dict, folder: Path, split: Path) -> dict:
    """The full LightningCLI config of one run (written next to its results, so it can be rerun)."""
    from zoo.cli import parse_config
    from zoo.registry import resolve
    from zoo.registry._checkpoint import read_config

    config = parse_config(["fit", "--config", f"{molecule}_forcefield"])
    if init != "scratch":
        task, _ = read_config(resolve(init).folder)
        model = task["task"]
        model["init_args"]["pretrained"] = init
        # one level (the molecule's DFT) and the scratch recipe's loss: a multi-fidelity model's
        # heads become one, re-fitted, and DeNS stays a pretraining matter
        model["init_args"]["model"]["init_args"].pop("levels", None)
        model["init_args"].pop("dens", None)
        model["init_args"]["optimizer"] = {"class_path": "torch.optim.AdamW",
                                           "init_args": {"lr": lr, "weight_decay": 0.0}}
        model["init_args"]["lr_scheduler"] = config["model"]["init_args"]["lr_scheduler"]
        config["model"] = model
    else:
        config["model"]["init_args"]["model"]["init_args"]["backbone"]["init_args"].update(backbone)
    train, test = data_files(molecule)
    seconds = round(60 * minutes)
    config["seed_everything"] = seed
    config["trainer"].update(max_epochs=100_000, max_time=f"00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:"
                                                          f"{seconds % 60:02d}",
                             default_root_dir=str(folder), enable_progress_bar=False)
    config["trainer"]["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger",
                                   "init_args": {"save_dir": str(folder), "name": "", "version": 0}}
    # fine-tuning sets are small: validate every epoch, scheduler and checkpoints on the same metric
    config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"]
                                      if not c["class_path"].endswith("ModelCheckpoint")] + [
        {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
         "init_args": {"monitor": "val/forces_mae", "filename": "best", "dirpath": str(folder / "checkpoints")}}]
    config["data"]["init_args"].update(
        source=str(train), test_source=str(test), batch_size=min(8, frames), split_file=str(split))
    return config


def train_and_test(molecule: str, init: str, frames: int, seed: int, minutes: float, lr: float,
                   backbone: dict, select: str = "random", select_model: str | None = None) -> dict:
    learning = "" if init == "scratch" else f"_lr{lr:g}"
    label = _label(init, backbone)
    folder = RESULTS / "runs" / molecule / f"{label}_{select}_n{frames}_seed{seed}{learning}_{minutes:g}min"
    # a run not in the records was interrupted: its checkpoints must not stand in for the new ones
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    feature_model = select_model or (None if init == "scratch" else init)
    split = training_split(molecule, frames, seed, select, feature_model, folder)
    config = run_config(molecule, init, frames, seed, minutes, lr, backbone, folder, split)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    zoo = [sys.executable, "-m", "zoo.cli"]
    began = time.time()
    with open(folder / "log.txt", "w") as log:
        subprocess.run([*zoo, "fit", "--config", str(folder / "config.yaml")], stdout=log, stderr=subprocess.STDOUT,
                       env=environment, check=True)
        trained = time.time() - began
        subprocess.run([*zoo, "test", "--config", str(folder / "config.yaml"), "--ckpt_path",
                        str(folder / "checkpoints" / "best.ckpt"), "--trainer.logger.init_args.version", "1"],
                       stdout=log, stderr=subprocess.STDOUT, env=environment, check=True)
    metrics = _test_metrics(folder)
    return {"molecule": molecule, "init": label, "pretrained": None if init == "scratch" else init,
            "select": select,
            "select_features": feature_model or "coulomb" if select != "random" else None,
            "frames": frames, "seed": seed, "minutes": minutes,
            "lr": None if init == "scratch" else lr, "epochs": _epochs(folder), "train_seconds": round(trained, 1),
            "test_forces_mae": metrics["test/forces_mae"] * 1000, "test_energy_mae": metrics["test/energy_mae"] * 1000,
            "units": "meV/Å, meV", "load_average": round(os.getloadavg()[0], 2)}


def _label(init: str, backbone: dict | None = None) -> str:
    """How a run's start is named in records and folders: ``scratch`` (``scratch(interaction=many_body)``
    with backbone arguments of its own), a registry name, or the name of a model folder
    (``runs/organic_pretrain/pretrained/organic-...`` -> ``organic-...``)."""
    if init == "scratch" and backbone:
        return "scratch(" + ",".join(f"{key}={value}" for key, value in sorted(backbone.items())) + ")"
    return Path(init).name if os.sep in init else init


def backbone_arguments(pairs: list[str]) -> dict:
    """``["channels=8", "interaction=many_body"]`` -> ``{"channels": 8, "interaction": "many_body"}``."""
    arguments = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise SystemExit(f"--backbone takes KEY=VALUE pairs, got {pair!r}")
        arguments[key] = yaml.safe_load(value)
    return arguments


def _metric_rows(folder: Path) -> list[dict]:
    import csv

    rows = []
    for path in sorted(folder.rglob("metrics.csv")):
        with open(path) as file:
            rows += list(csv.DictReader(file))
    return rows


def _test_metrics(folder: Path) -> dict[str, float]:
    tested = [row for row in _metric_rows(folder) if row.get("test/forces_mae")]
    if not tested:
        raise RuntimeError(f"no test metrics in {folder}: see {folder / 'log.txt'}")
    return {key: float(value) for key, value in tested[-1].items() if key.startswith("test/") and value}


def _epochs(folder: Path) -> int:
    epochs = [int(row["epoch"]) for row in _metric_rows(folder) if row.get("val/forces_mae")]
    return max(epochs) + 1 if epochs else 0


def zero_shot(molecule: str, init: str) -> dict:
    """The pretrained model's force and energy errors on the test trajectory, as it is (no training);
    the energy error after removing the mean offset, since the model's energy zero is its own. For
    scale, the force error of the GFN2-xTB forces the frames carry from their MD (``xtb_forces``)."""
    import ase.io
    import numpy as np

    import zoo

    task = zoo.load(init)
    frames = ase.io.read(data_files(molecule)[1], index=":")
    predictions = task.predict(frames)
    forces = np.concatenate([p["forces"] - atoms.get_forces() for p, atoms in zip(predictions, frames)])
    energies = np.array([p["energy"] - atoms.get_potential_energy() for p, atoms in zip(predictions, frames)])
    record = {"molecule": molecule, "init": _label(init), "pretrained": init, "frames": 0, "seed": None,
              "minutes": 0.0, "test_forces_mae": float(np.abs(forces).mean() * 1000),
              "test_energy_mae": float(np.abs(energies - energies.mean()).mean() * 1000),
              "energy_offset": float(energies.mean()), "units": "meV/Å, meV (offset eV)"}
    if all("xtb_forces" in atoms.arrays for atoms in frames):
        xtb = np.concatenate([atoms.arrays["xtb_forces"] - atoms.get_forces() for atoms in frames])
        record["xtb_forces_mae"] = float(np.abs(xtb).mean() * 1000)
    return record


def table(path: Path, molecule: str) -> str:
    import numpy as np

    found = [{**r, "init": _row_label(r)} for r in records(path, molecule)]
    inits = list(dict.fromkeys(r["init"] for r in found))
    sizes = sorted({r["frames"] for r in found if r["frames"]})
    lines = [f"# Fine-tuning against training from scratch at equal CPU time: {molecule}", "",
             f"`python benchmarks/finetune/finetune.py --molecule {molecule} table` from `{_shown(path)}`: test force MAE "
             "(meV/Å) on the independent test trajectory, mean ± std over seeds (number of seeds); "
             "frames 0 = the pretrained model as it is.", "",
             "| " + " | ".join(["init", *(f"N = {n}" for n in sizes), "zero-shot"]) + " |",
             "|---|" + "---:|" * (len(sizes) + 1)]
    for init in inits:
        cells = []
        for n in [*sizes, 0]:
            values = [r["test_forces_mae"] for r in found if r["init"] == init and r["frames"] == n]
            cells.append("–" if not values else f"{np.mean(values):.1f} ± {np.std(values):.1f} ({len(values)})")
        lines.append(f"| {init} | " + " | ".join(cells) + " |")
    minutes = sorted({r["minutes"] for r in found if r["frames"]})
    if minutes:
        lines += ["", f"Training wall clock per run: {', '.join(f'{m:g}' for m in minutes)} min on one thread."]
    return "\n".join(lines) + "\n"


def _row_label(record: dict) -> str:
    """A table row: the start, with the selection when not random and the fine-tuning learning rate."""
    notes = [record["select"]] if record.get("select", "random") != "random" and record["frames"] else []
    notes += [f"lr {record['lr']:g}"] if record.get("lr") else []
    return record["init"] + (f" ({', '.join(notes)})" if notes else "")


def _shown(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)


def figure(path: Path, molecule: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    found = [{**r, "init": _row_label(r)} for r in records(path, molecule) if r["frames"]]
    if not found:  # zero-shot records alone: nothing to draw against N
        return
    fig, axis = plt.subplots(figsize=(5, 3.6))
    for init in dict.fromkeys(r["init"] for r in found):
        sizes = sorted({r["frames"] for r in found if r["init"] == init})
        values = [[r["test_forces_mae"] for r in found if r["init"] == init and r["frames"] == n] for n in sizes]
        axis.errorbar(sizes, [np.mean(v) for v in values], yerr=[np.std(v) for v in values], marker="o",
                      capsize=3, label=init)
    axis.set(xscale="log", yscale="log", xlabel="DFT training frames N", ylabel="test force MAE (meV/Å)")
    # the frame counts themselves as ticks: log axes label minor ticks as 3x10^1, 4x10^1, ... on top of each other
    frames = sorted({r["frames"] for r in found})
    axis.set_xticks(frames, [str(n) for n in frames], minor=False)
    axis.set_xticks([], minor=True)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=150)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.command == "run":
        backbone = backbone_arguments(args.backbone)
        if backbone and args.init != ["scratch"]:
            raise SystemExit("--backbone changes the scratch recipe; a fine-tune keeps its pretrained architecture")
        done = {(r["init"], r.get("select", "random"), r["frames"], r["seed"], r["minutes"], r.get("lr"))
                for r in records(args.records, args.molecule)}
        for seed in args.seeds:
            for frames in args.frames:
                for init in args.init:
                    for select in args.select:
                        lr = None if init == "scratch" else args.lr
                        if (_label(init, backbone), select, frames, seed, args.minutes, lr) in done:
                            continue
                        print(f"[finetune] {args.molecule}: {init}, {select} N = {frames}, seed {seed}, "
                              f"{args.minutes:g} min", flush=True)
                        record = train_and_test(args.molecule, init, frames, seed, args.minutes, args.lr,
                                                backbone, select, args.select_model)
                        append_json_record(args.records, record)
                        print(f"[finetune]   test force MAE {record['test_forces_mae']:.1f} meV/Å "
                              f"({record['epochs']} epochs)", flush=True)
    elif args.command == "zero-shot":
        for init in args.init:
            record = zero_shot(args.molecule, init)
            append_json_record(args.records, record)
            xtb = f" (GFN2-xTB's own forces: {record['xtb_forces_mae']:.1f})" if "xtb_forces_mae" in record else ""
            print(f"[finetune] {init} zero-shot on {args.molecule}: {record['test_forces_mae']:.1f} meV/Å{xtb}",
                  flush=True)
    else:
        text = table(args.records, args.molecule)
        args.records.with_suffix(".md").write_text(text)
        figure(args.records, args.molecule, args.records.with_suffix(".png"))
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
