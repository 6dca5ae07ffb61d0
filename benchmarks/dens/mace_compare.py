"""Peer comparison with mace-torch (issue 6): MACE trained on a zoo run's data for its wall clock.

Given a run folder of the DeNS study (``results/runs/dens_study/<variant>_seed<seed>``, with
``version_0/split.npz``) or a split file, this

1. writes the run's very training and validation structures for MACE (``prepare_mace.py``);
2. trains MACE (``mace_run_train`` of the separate mace-torch environment, one process, CPU,
   float32, ``OMP_NUM_THREADS`` threads) at the size matched to the zoo recipe, for the same wall
   clock: mace-torch has no time limit, so its training loop is wrapped (in its own process) to
   stop after the first training step past the budget, as Lightning's ``max_time`` stops the zoo;
   the clock runs from the first training epoch to the end of the loop, validation included, as
   the zoo's ``fit_seconds``. The model evaluated is the final EMA model (as the zoo's), or the
   best-validation checkpoint MACE would keep (``--mace-weights best``);
3. measures it, in the mace environment, through ``MACECalculator`` exactly as ``study.py``
   measures the zoo model: energy and force MAE/RMSE on every test structure, training
   structures/s (completed epochs x n_train / training seconds), parameter count, and an MD run
   with ``zoo.analysis.md_stability`` (Langevin NVT 500 K, 0.5 fs, single-structure calls: MD
   steps/s, stable time, h(r) error);
4. runs the same MD with the zoo run's own model (its ``last.ckpt``, EMA weights) right after, so
   that both MD speeds come from the same machine state, and reads the zoo run's record from the
   study's ``dens_study.json`` for its errors and training throughput; the ratios zoo/MACE follow.

One JSON record per seed and MACE size is added to ``results/mace_compare.json`` (a record already
there is kept unless ``--force``) and printed.

    OMP_NUM_THREADS=1 python benchmarks/dens/mace_compare.py benchmarks/dens/results/runs/dens_study/dens_seed0

The budget defaults to the ``fit_seconds`` of the run's own record in ``dens_study.json`` (next to
``runs/``); ``--seconds`` overrides it. See ``mace_plan.md`` for the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
MD_STABILITY = ROOT / "zoo" / "analysis" / "md_stability.py"  # numpy + ASE only: the mace env loads it too
DEFAULT_MACE_ENV = "/tmp/mace-env"

#: MACE sizes. ``matched`` is the zoo recipe's (ethanol_forcefield: 32 channels of
#: 0e+1o+2e features, spherical harmonics to l = 2, 3 layers, cutoff 5 Å) one for one: hidden irreps
#: 32x0e+32x1o+32x2e, max_ell 2, 3 interactions (MACE adds its correlation-3 products): 154,128
#: parameters against the zoo's 191,297 (0.81x). ``small`` is MACE's usual small model (32 channels,
#: max_L 1, max_ell 3, 2 interactions): 93,520 parameters (0.49x). Counts for ethanol (H, C, O).
MACE_SIZES = {
    "matched": ["--num_channels", "32", "--max_L", "2", "--max_ell", "2", "--num_interactions", "3"],
    "small": ["--num_channels", "32", "--max_L", "1", "--max_ell", "3", "--num_interactions", "2"],
}
MACE_MODEL = ["--model", "MACE", "--correlation", "3", "--r_max", "5.0"]
#: The zoo's loss is MSE(E) + 100 MSE(F) on total energies (eV) and force components (eV/Å);
#: MACE's is w_E MSE(E / N) + w_F MSE(F) with per-atom energies, so the same loss needs
#: w_E = N^2 (81 for ethanol) at w_F = 100: the energy weight is set from the training structures
#: (mean N^2) unless ``--energy-weight`` is given (``--energy-weight 1`` is MACE's own 1:100).
MACE_TRAINING = ["--batch_size", "8", "--valid_batch_size", "50", "--E0s", "average",
                 "--forces_weight", "100", "--ema", "--ema_decay", "0.99",
                 "--device", "cpu", "--default_dtype", "float32", "--eval_interval", "1", "--save_cpu",
                 "--max_num_epochs", "1000000", "--patience", "1000000"]


# --------------------------------------------------------------------------------------------
# the driver (zoo environment)
# --------------------------------------------------------------------------------------------

def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a zoo run folder (results/runs/dens_study/<variant>_seed<seed>) or a split file (.npz/.json)")
    parser.add_argument("--train", default=str(ROOT / "data/ethanol/ethanol_pbe_def2svp_train.extxyz"),
                        help="the extxyz the zoo run read (read only)")
    parser.add_argument("--test", default=str(ROOT / "data/ethanol/ethanol_pbe_def2svp_test.extxyz"))
    parser.add_argument("--seconds", type=float, default=None,
                        help="MACE's training wall clock (default: fit_seconds of the run's dens_study.json record)")
    parser.add_argument("--seed", type=int, default=None, help="default: from the run folder's name")
    parser.add_argument("--md-ps", type=float, default=0.1, help="MD length (0.1 ps = 200 steps of 0.5 fs; 0: none)")
    parser.add_argument("--study", default=None, help="the study's records (default: dens_study.json beside runs/)")
    parser.add_argument("--recipe", default=None,
                        help="zoo recipe whose model size is reported when the run has no config.yaml "
                             "(default: the run variant's recipe, else ethanol_forcefield)")
    parser.add_argument("--mace-env", default=os.environ.get("MACE_ENV", DEFAULT_MACE_ENV))
    parser.add_argument("--mace-size", choices=sorted(MACE_SIZES), default="matched",
                        help="matched: the zoo recipe's widths, degrees and depth; small: MACE's usual small model")
    parser.add_argument("--energy-weight", type=float, default=None,
                        help="MACE's --energy_weight (default: mean N^2 of the training structures, "
                             "which makes MACE's loss the zoo's; 1: MACE's own 1:100 on per-atom energies)")
    parser.add_argument("--mace-weights", choices=["final", "best"], default="final",
                        help="final EMA model (as the zoo's) or MACE's best-validation checkpoint")
    parser.add_argument("--mace-args", default="", help="extra mace_run_train arguments (appended, so they win)")
    parser.add_argument("--work", default=None, help="MACE's folder (default: results/runs/mace_<run name>)")
    parser.add_argument("--out", default=str(RESULTS / "mace_compare.json"))
    parser.add_argument("--force", action="store_true", help="redo a seed already in --out")
    return parser.parse_args(argv)


def locate(run: Path, seed: int | None):
    """(split file, run folder or None, variant or None, seed) of a run folder or split file."""
    if run.is_file():
        split, folder = run, (run.parent.parent if run.parent.name.startswith("version_") else None)
    else:
        split, folder = run / "version_0" / "split.npz", run
        if not split.is_file():
            found = sorted(run.glob("version_*/split.npz"))
            if not found:
                raise FileNotFoundError(f"no version_*/split.npz in {run}")
            split = found[-1]
    variant = None
    if folder is not None:
        match = re.fullmatch(r"(.+)_seed(\d+)", folder.name)
        if match:
            variant, seed = match.group(1), int(match.group(2)) if seed is None else seed
    if seed is None:
        raise ValueError("give --seed: it cannot be read from the run folder's name")
    return split, folder, variant, seed


def study_record(study: Path | None, variant: str | None, seed: int) -> dict | None:
    if study is None or variant is None or not study.is_file():
        return None
    return next((r for r in json.loads(study.read_text()) if r.get("variant") == variant and r.get("seed") == seed), None)


def zoo_model(config: Path | str, run: Path | None):
    """The zoo force field of a run (its last checkpoint: the EMA weights) or, without a run, of a
    recipe (a file or a packaged recipe's name; untrained: its size only); and the number of
    training-only parameters of the task (DeNS heads), which are not part of the force field."""
    from zoo.cli import parse_config
    from zoo.registry import instantiate_task, load_run

    if run is not None:
        task = load_run(run)
    else:
        task = instantiate_task(parse_config(["fit", "--config", str(config)])["model"], where=str(config))
    extra = sum(p.numel() for name, p in task.named_parameters() if not name.startswith("model."))
    return task.model.eval(), extra


def mace_python(env: str) -> str:
    python = Path(env) / "bin" / "python"
    if not python.is_file():
        raise FileNotFoundError(f"no mace-torch environment at {env}: see benchmarks/dens/mace_plan.md")
    return str(python)


def child_env() -> dict:
    """MACE's processes: the threads of zoo's, no GPU, and the allocator settings the zoo command
    applies (zoo.keep_freed_memory), so that neither side trains with a slower allocator."""
    from zoo._allocator import environment

    threads = os.environ.get("OMP_NUM_THREADS", "1")
    return {**environment(), **os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "CUDA_VISIBLE_DEVICES": ""}


def run_mace(python: str, arguments: list[str], log: Path, timeout: float) -> None:
    """A subcommand of this file in the mace environment; its output goes to ``log``."""
    command = [python, __file__, *arguments]
    print(" ".join(command), flush=True)
    with open(log, "w") as handle:
        try:
            done = subprocess.run(command, check=False, stdout=handle, stderr=subprocess.STDOUT, env=child_env(),
                                  cwd=str(log.parent), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{arguments[0]} ran past {timeout:.0f} s; see {log}") from None
    if done.returncode != 0:
        tail = "".join(log.read_text().splitlines(True)[-25:])
        raise RuntimeError(f"{arguments[0]} failed (exit {done.returncode}); see {log}:\n{tail}")


def _key(record: dict) -> tuple[int, str]:
    """Records are kept one per seed and MACE size."""
    return record["seed"], record.get("mace_size", "matched")


def md_record(result) -> dict:
    return {"md_stable_ps": result.stable_time_ps, "md_collapsed": result.collapsed, "md_steps": result.n_steps,
            "md_h_error": result.h_error, "md_steps_per_s": result.steps_per_second}


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = Path(args.out)
    split, folder, variant, seed = locate(Path(args.run), args.seed)
    records = json.loads(out.read_text()) if out.is_file() else []
    key = (seed, args.mace_size)
    done = [r for r in records if _key(r) == key]
    if done and not args.force:
        print(f"seed {seed} ({args.mace_size} MACE) is already in {out} (--force to redo it)")
        print("RESULT " + json.dumps(done[0]))
        return done[0]
    study = Path(args.study) if args.study else (folder.parent.parent / "dens_study.json" if folder else None)
    zoo = study_record(study, variant, seed)
    seconds = args.seconds if args.seconds is not None else (zoo or {}).get("fit_seconds")
    if seconds is None:
        raise ValueError(f"no --seconds and no record of {variant} seed {seed} in {study}: give the budget")
    name = folder.name if folder else f"seed{seed}"
    # under runs/, which git ignores: data copies, checkpoints, models and logs
    work = Path(args.work) if args.work else RESULTS / "runs" / f"mace_{name}"
    python = mace_python(args.mace_env)
    for stale in ("checkpoints", "logs", "results"):  # MACE would evaluate a stale checkpoint of a higher epoch
        shutil.rmtree(work / stale, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from prepare_mace import write_mace_files

    from zoo.data import load_split

    n_source = load_split(split).n
    files = write_mace_files(split, args.train, work / "data")
    if args.energy_weight is None:
        import ase.io

        sizes = [len(a) for a in ase.io.read(files["train"], index=":")]
        args.energy_weight = sum(n * n for n in sizes) / len(sizes)

    # zoo's side: the size of the run's model (or of the recipe), and its MD speed now
    config = folder / split.parent.name / "config.yaml" if folder else None
    checkpoint = split.parent / "checkpoints" / "last.ckpt"
    if config is None or not config.is_file() or not checkpoint.is_file():
        import study as study_module

        config = args.recipe or study_module.RECIPES.get(variant, "ethanol_forcefield")
        checkpoint = None
    model, zoo_training_only = zoo_model(config, None if checkpoint is None else split.parent)
    record = {"seed": seed, "zoo_run": str(folder or split), "variant": variant, "budget_s": seconds,
              "threads": int(child_env()["OMP_NUM_THREADS"]), "train": args.train, "test": args.test,
              "allocator_env": {k: v for k, v in child_env().items() if k.startswith("MALLOC_")},
              "zoo_config": str(config), "zoo_parameters": sum(p.numel() for p in model.parameters()),
              "zoo_training_only_parameters": zoo_training_only}
    if zoo:
        record.update({f"zoo_{k}": zoo[k] for k in ("epochs", "fit_seconds", "train_structures_per_s", "energy_mae_meV",
                                                    "energy_rmse_meV", "forces_mae_meV_A", "forces_rmse_meV_A",
                                                    "md_steps_per_s", "md_stable_ps", "md_h_error") if k in zoo})

    # MACE: train under the budget, then measure
    start = time.perf_counter()
    mace_name = f"mace_seed{seed}"
    train_arguments = ["--name", mace_name, "--seed", str(seed), "--work_dir", str(work),
                       "--train_file", str(files["train"]), "--valid_file", str(files["valid"]),
                       "--energy_key", "REF_energy", "--forces_key", "REF_forces",
                       *MACE_MODEL, *MACE_SIZES[args.mace_size], *MACE_TRAINING,
                       "--energy_weight", f"{args.energy_weight:g}", *args.mace_args.split()]
    run_mace(python, ["_mace-train", "--budget", str(seconds), "--weights", args.mace_weights,
                      "--timing", str(work / "timing.json"), "--", *train_arguments],
             work / "mace_train.log", timeout=1.5 * seconds + 1200)
    timing = json.loads((work / "timing.json").read_text())
    model_file = work / f"{mace_name}.model"
    run_mace(python, ["_mace-eval", "--model", str(model_file), "--test", args.test, "--reference", args.train,
                      "--n-reference", str(-1 if n_source is None else n_source), "--md-ps", str(args.md_ps),
                      "--seed", str(seed), "--out", str(work / "eval.json")],
             work / "mace_eval.log", timeout=1800)
    evaluation = json.loads((work / "eval.json").read_text())
    record.update({f"mace_{k}": v for k, v in {**timing, **evaluation}.items()})
    record["mace_size"], record["mace_arguments"] = args.mace_size, " ".join(train_arguments)
    # a cross-check of the epoch count: MACE logs one "Epoch N:" validation line per epoch, the
    # last (partial) one included
    log = work / "logs" / f"{mace_name}_run-{seed}.log"
    if log.is_file():
        record["mace_log_validations"] = len(re.findall(r"INFO: Epoch \d+:", log.read_text()))

    if args.md_ps > 0 and checkpoint is not None:  # the zoo model's MD, same protocol, same moment
        import ase.io
        import numpy as np
        import torch

        from zoo.analysis import md_stability

        torch.set_num_threads(record["threads"])
        reference = ase.io.read(args.train, index=":" if n_source is None else f":{n_source}")
        result = md_stability(reference[0], model.as_calculator(), np.stack([a.positions for a in reference]),
                              time_ps=args.md_ps, seed=seed)
        record.update({f"zoo_now_{k}": v for k, v in md_record(result).items()})
    zoo_md = record.get("zoo_now_md_steps_per_s", record.get("zoo_md_steps_per_s"))
    ratios = {"ratio_train_structures_per_s": (record.get("zoo_train_structures_per_s"), record["mace_train_structures_per_s"]),
              "ratio_md_steps_per_s": (zoo_md, record.get("mace_md_steps_per_s")),
              "ratio_forces_mae": (record.get("zoo_forces_mae_meV_A"), record["mace_forces_mae_meV_A"]),
              "ratio_energy_mae": (record.get("zoo_energy_mae_meV"), record["mace_energy_mae_meV"]),
              "ratio_parameters": (record["zoo_parameters"], record["mace_parameters"])}
    record.update({k: a / b for k, (a, b) in ratios.items() if a is not None and b})
    record["wall_seconds"] = time.perf_counter() - start

    from zoo._files import append_json_record  # the driver's side only: the mace env has no zoo

    # re-read under the file's lock: another run may have added its record during this one's hour
    append_json_record(out, record, replaces=lambda r: _key(r) == key)
    print("RESULT " + json.dumps(record), flush=True)
    return record


# --------------------------------------------------------------------------------------------
# inside the mace-torch environment (no zoo imports: its e3nn differs)
# --------------------------------------------------------------------------------------------

class _BudgetReached(Exception):
    pass


def mace_train(argv) -> None:
    """``mace_run_train`` with a wall-clock budget; writes the training time and counts."""
    parser = argparse.ArgumentParser(prog="mace_compare.py _mace-train")
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--weights", choices=["final", "best"], default="final")
    parser.add_argument("--timing", required=True)
    parser.add_argument("--count-only", action="store_true", help="print the parameter count and stop")
    parser.add_argument("mace", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    mace_argv = args.mace[1:] if args.mace[:1] == ["--"] else args.mace

    import contextlib

    import mace.tools
    import torch
    from mace.cli import run_train
    from mace.tools import CheckpointState

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    loop = sys.modules["mace.tools.train"]
    original_train, take_step = loop.train, loop.take_step
    state = {"start": None, "over": False, "epochs_completed": 0, "structures_seen": 0, "step_seconds": 0.0,
             "last_epoch": None}

    def train_one_epoch(model, loss_fn, data_loader, optimizer, epoch, output_args, max_grad_norm, ema, logger,
                        device, distributed, distributed_model=None, rank=0):
        # MACE's own loop (minus L-BFGS and DDP), with the clock checked after every step
        if state["over"]:
            raise _BudgetReached
        if state["start"] is None:
            state["start"] = time.perf_counter()
        state["last_epoch"] = epoch
        for batch in data_loader:
            step_start = time.perf_counter()
            _, metrics = take_step(model=model, loss_fn=loss_fn, batch=batch, optimizer=optimizer, ema=ema,
                                   output_args=output_args, max_grad_norm=max_grad_norm, device=device)
            state["step_seconds"] += time.perf_counter() - step_start
            state["structures_seen"] += int(batch.num_graphs)
            metrics.update(mode="opt", epoch=epoch)
            logger.log(metrics)
            if time.perf_counter() - state["start"] >= args.budget:
                state["over"] = True
                return  # MACE validates (and checkpoints) this partial epoch, then stops
        state["epochs_completed"] += 1

    def train(**kwargs):
        model = kwargs["model"]
        n_train = len(kwargs["train_loader"].dataset)
        parameters = sum(p.numel() for p in model.parameters())
        print(f"mace_compare: {parameters} parameters, {n_train} training structures", flush=True)
        if args.count_only:
            Path(args.timing).write_text(json.dumps({"parameters": parameters}))
            raise SystemExit(0)
        stopped_by = "budget"
        try:
            original_train(**kwargs)
            stopped_by = "max_num_epochs or patience"
        except _BudgetReached:
            pass
        seconds = time.perf_counter() - state["start"]
        if args.weights == "final":  # the final EMA weights, as the highest epoch: MACE loads that one next
            ema = kwargs.get("ema")
            with ema.average_parameters() if ema is not None else contextlib.nullcontext():
                kwargs["checkpoint_handler"].save(
                    state=CheckpointState(model, kwargs["optimizer"], kwargs["lr_scheduler"]),
                    epochs=state["last_epoch"] + 1, keep_last=True)
        timing = {"parameters": parameters, "n_train": n_train, "train_seconds": seconds,
                  "step_seconds": state["step_seconds"], "epochs_completed": state["epochs_completed"],
                  "structures_seen": state["structures_seen"],
                  "train_structures_per_s": state["epochs_completed"] * n_train / seconds,
                  "train_structures_per_s_seen": state["structures_seen"] / seconds,
                  "stopped_by": stopped_by, "weights": args.weights}
        Path(args.timing).write_text(json.dumps(timing))
        print(f"mace_compare: {json.dumps(timing)}", flush=True)

    loop.train_one_epoch = train_one_epoch
    mace.tools.train = train  # run_train calls tools.train(...)
    sys.argv = ["mace_run_train", *mace_argv]
    run_train.main()


def mace_eval(argv) -> None:
    """Test errors, parameter count and MD of a trained MACE model, through MACECalculator."""
    parser = argparse.ArgumentParser(prog="mace_compare.py _mace-eval")
    parser.add_argument("--model", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--reference", required=True, help="training extxyz: MD start and reference structures")
    parser.add_argument("--n-reference", type=int, default=-1)
    parser.add_argument("--md-ps", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import importlib.metadata
    import importlib.util

    import ase.io
    import numpy as np
    import torch
    from mace.calculators import MACECalculator

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    calculator = MACECalculator(model_paths=args.model, device="cpu", default_dtype="float32")
    images = ase.io.read(args.test, index=":")
    energies, forces = [], []
    start = time.perf_counter()
    for atoms in images:  # single-structure calls, as an MD engine makes them
        reference_energy, reference_forces = atoms.get_potential_energy(), atoms.get_forces()
        probe = atoms.copy()
        probe.calc = calculator
        energies.append(probe.get_potential_energy() - reference_energy)
        forces.append((probe.get_forces() - reference_forces).reshape(-1))
    seconds = time.perf_counter() - start
    de, df = np.array(energies), np.concatenate(forces)
    versions = {name: importlib.metadata.version(name) for name in ("mace-torch", "e3nn", "torch", "ase")}
    result = {"n_test": len(images), "energy_mae_meV": 1e3 * float(np.abs(de).mean()),
              "energy_rmse_meV": 1e3 * float(np.sqrt((de ** 2).mean())),
              "forces_mae_meV_A": 1e3 * float(np.abs(df).mean()),
              "forces_rmse_meV_A": 1e3 * float(np.sqrt((df ** 2).mean())),
              "test_structures_per_s": len(images) / seconds,
              "parameters_calculator": sum(p.numel() for p in calculator.models[0].parameters()),
              "versions": versions}
    if args.md_ps > 0:
        spec = importlib.util.spec_from_file_location("md_stability", MD_STABILITY)
        module = importlib.util.module_from_spec(spec)
        sys.modules["md_stability"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        index = ":" if args.n_reference < 0 else f":{args.n_reference}"
        reference = ase.io.read(args.reference, index=index)
        md = module.md_stability(reference[0], calculator, np.stack([a.positions for a in reference]),
                                 time_ps=args.md_ps, seed=args.seed)
        result.update(md_record(md))
    Path(args.out).write_text(json.dumps(result))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["_mace-train"]:
        mace_train(sys.argv[2:])
    elif sys.argv[1:2] == ["_mace-eval"]:
        mace_eval(sys.argv[2:])
    else:
        main()
