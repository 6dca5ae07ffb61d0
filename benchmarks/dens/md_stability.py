"""MD stability as in "Forces are not enough" (Fu et al., TMLR 2023), issue 20 item 5: for each force
field, several NVT trajectories at 500 K (0.5 fs, Langevin 0.01/fs), each until collapse (a bond
off its reference length by more than 0.5 Å) or the end; the stable time, and the error of the
distribution of interatomic distances h(r) against the molecule's DFT test trajectory.

A model is a zoo registry name, a zoo run folder or checkpoint (``zoo.registry.load_run``), or
``mace:PATH`` (a mace-torch ``.model`` file, run in the mace-torch environment of
``mace_compare.py``, ``--mace-env``). Trajectory ``k`` starts from frame ``k * stride`` of the test
trajectory. ``--copies`` trajectories run together as independent copies of the molecule
(``zoo.analysis.md_stability_replicas``; a zoo model evaluates them as one batch, five ethanol
molecules in 1.8x the time of one; a MACE model as one system of copies in a periodic box through
its ASE calculator, ``zoo.analysis.joined_predict``, in float32 as it was trained and as the zoo
models run), their velocities and thermostat drawn from the seed of their first trajectory.
Each batch's records are appended to ``results/md_stability/<molecule>.json`` as it ends, and a
recorded (model, trajectory) is skipped, so an interrupted run resumes from the last finished
batch; ``--only`` splits a model's trajectories between processes (one per core), which append
to the same file under its lock; ``--label`` names a model in records and table (a MACE model
by its run, not its file). ``--table-only`` writes the table
(``results/md_stability/<molecule>.md``) and the figure (``.png``).

    OMP_NUM_THREADS=1 python benchmarks/dens/md_stability.py --molecule ethanol \\
        --models ethanol-dens-pbe-def2svp-v2 --trajectories 5 --ps 20
    OMP_NUM_THREADS=1 python benchmarks/dens/md_stability.py --molecule ethanol \\
        --models mace:runs/mace/ethanol.model --label "mace-torch (60 min)" --trajectories 5 --ps 20
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUT = HERE / "results" / "md_stability"
MD_STABILITY = ROOT / "zoo" / "analysis" / "md_stability.py"  # numpy + ASE only: the mace env loads it too
DEFAULT_MACE_ENV = "/tmp/mace-env"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default="ethanol", choices=["ethanol", "malonaldehyde"])
    parser.add_argument("--models", nargs="+", default=[])
    parser.add_argument("--trajectories", type=int, default=5)
    parser.add_argument("--only", nargs="+", type=int, default=None, metavar="K",
                        help="run only these of the trajectories (0-based): a model's trajectories split between "
                             "processes, one per core, all writing the same records file")
    parser.add_argument("--ps", type=float, default=20.0, help="length of each trajectory (ps)")
    parser.add_argument("--temperature", type=float, default=500.0)
    parser.add_argument("--stride", type=int, default=40, help="test frames between the starts of trajectories")
    parser.add_argument("--copies", type=int, default=5,
                        help="trajectories run together, as copies in one batch (a record per batch)")
    parser.add_argument("--compile", action="store_true",
                        help="zoo models through zoo.models.compile_for_inference (2-3x faster MD on CPU)")
    parser.add_argument("--mace-env", default=os.environ.get("MACE_ENV", DEFAULT_MACE_ENV))
    parser.add_argument("--out", type=Path, default=None, help="records file (default results/md_stability/<molecule>.json)")
    parser.add_argument("--label", default=None,
                        help="the name records and table give the model (one model only; default the model argument)")
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args(argv)
    if args.label and len(args.models) != 1:
        parser.error(f"--label names one model; got {len(args.models)} models: run one model per call")
    args.out = args.out or OUT / f"{args.molecule}.json"
    return args


def test_file(molecule: str) -> Path:
    return ROOT / "data" / molecule / f"{molecule}_pbe_def2svp_test.extxyz"


@functools.cache
def load_md_stability():
    """zoo.analysis.md_stability by file, so that the mace-torch environment needs no zoo install."""
    spec = importlib.util.spec_from_file_location("md_stability", MD_STABILITY)
    module = importlib.util.module_from_spec(spec)
    sys.modules["md_stability"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def trajectories(calculator, test: Path, ks: list[int], stride: int, ps: float, temperature: float,
                 predict=None) -> list[dict]:
    """Trajectories ``ks``, trajectory k from test frame ``k * stride``, run together as copies
    (``md_stability_replicas``, thermostat seed ``ks[0]``): one record each."""
    import ase.io

    reference = ase.io.read(test, index=":")
    starts = [reference[(k * stride) % len(reference)] for k in ks]
    results = load_md_stability().md_stability_replicas(
        starts, calculator, np.stack([a.positions for a in reference]), time_ps=ps, temperature=temperature,
        seed=ks[0], predict=predict, progress=lambda line: print(line, file=sys.stderr, flush=True))
    return [{"trajectory": k, "ps": ps, "temperature_K": temperature, "stable_time_ps": result.stable_time_ps,
             "collapsed": result.collapsed, "h_error": result.h_error, "copies": len(ks),
             "md_steps_per_s": result.steps_per_second * len(ks)}
            for k, result in zip(ks, results)]


def zoo_calculator(model: str, compiled: bool = False):
    import torch

    import zoo
    from zoo.models import compile_for_inference
    from zoo.registry import load_run

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    path = Path(model)
    task = load_run(path) if path.exists() and (path.suffix == ".ckpt" or (path / "config.yaml").exists()) \
        else zoo.load(model)
    if compiled:
        compile_for_inference(task)
    return task.as_calculator()


def run_batch(args, model: str, ks: list[int]) -> list[dict]:
    if not model.startswith("mace:"):
        import warnings

        from zoo.models import ExtrapolationWarning

        calculator = zoo_calculator(model, args.compile)
        with warnings.catch_warnings():
            # a collapsing trajectory leaves the training domain: the collapse is what is measured
            warnings.simplefilter("ignore", ExtrapolationWarning)
            return trajectories(calculator, test_file(args.molecule), ks, args.stride, args.ps, args.temperature,
                                predict=calculator.predict)
    python = Path(args.mace_env) / "bin" / "python"
    command = [str(python), __file__, "_mace-md", model[len("mace:"):], str(test_file(args.molecule)),
               ",".join(map(str, ks)), str(args.stride), str(args.ps), str(args.temperature)]
    from zoo._allocator import environment  # the allocator settings zoo's side runs with (main)

    # progress (stderr) goes to the user; the records come back on stdout
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True,
                            env={**environment(), **os.environ}).stdout
    return json.loads(output.strip().splitlines()[-1])


def mace_md(argv: list[str]) -> None:
    """In the mace-torch environment: trajectories of a MACE model (the copies as one structure
    through its ASE calculator), their records on stdout."""
    import torch
    from mace.calculators import MACECalculator

    model, test, ks, stride, ps, temperature = argv
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    calculator = MACECalculator(model_paths=model, device="cpu", default_dtype="float32")
    print(json.dumps(trajectories(calculator, Path(test), [int(k) for k in ks.split(",")], int(stride), float(ps),
                                  float(temperature), predict=load_md_stability().joined_predict(calculator))))


def records(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def run(args) -> None:
    from zoo._files import append_json_record  # zoo's side only: the mace env has no zoo

    for model in args.models:
        name = args.label or model
        done = {r["trajectory"] for r in records(args.out) if r["model"] == name and r["ps"] == args.ps}
        todo = [k for k in (args.only or range(args.trajectories)) if k not in done]
        for batch in (todo[i:i + args.copies] for i in range(0, len(todo), args.copies)):
            print(f"[md stability] {args.molecule} {name} trajectories {batch}: {args.ps:g} ps at "
                  f"{args.temperature:g} K, run together", flush=True)
            new = [{"model": name, **record} for record in run_batch(args, model, batch)]
            for record in new:
                print(f"[md stability]   trajectory {record['trajectory']}: stable {record['stable_time_ps']:.2f} ps, "
                      f"collapsed {record['collapsed']}, h(r) error {record['h_error']:.3f}", flush=True)
            print(f"[md stability]   {new[0]['md_steps_per_s']:.1f} trajectory steps/s", flush=True)
            for record in new:
                append_json_record(args.out, record)


def table(path: Path, molecule: str) -> str:
    lines = [f"# MD stability, {molecule}: NVT 500 K, 0.5 fs, from frames of the DFT test trajectory", "",
             "Stable time: until a bond is off its reference length by more than 0.5 Å (collapse), or the end.",
             "h(r) error: ∫|h(r) − h_ref(r)| dr against the DFT test trajectory, over the frames before collapse.",
             "Trajectory steps/s: MD steps of one trajectory per second times the trajectories run together, one thread.",
             "`python benchmarks/dens/md_stability.py` (see its docstring) makes every row.", "",
             "| model | trajectories | length (ps) | collapsed | stable time (ps), mean (min) | h(r) error | trajectory steps/s |",
             "|---|---|---|---|---|---|---|"]
    rows = records(path)
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        stable = [r["stable_time_ps"] for r in mine]
        lines.append(f"| {model} | {len(mine)} | {max(r['ps'] for r in mine):g} | {sum(r['collapsed'] for r in mine)} "
                     f"| {statistics.mean(stable):.2f} ({min(stable):.2f}) "
                     f"| {statistics.mean(r['h_error'] for r in mine):.3f} "
                     f"| {statistics.mean(r['md_steps_per_s'] for r in mine):.1f} |")
    return "\n".join(lines) + "\n"


def figure(path: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = records(path)
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.6 * len(models) + 2))
    for i, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        axes[0].scatter([r["stable_time_ps"] for r in mine], [i] * len(mine), marker="o")
        axes[1].scatter([r["h_error"] for r in mine], [i] * len(mine), marker="o")
    for ax, label in zip(axes, ("stable time (ps)", "h(r) error")):
        ax.set_yticks(range(len(models)), models)
        ax.set_xlabel(label)
    axes[1].set_yticks(range(len(models)), [""] * len(models))
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.table_only:
        import zoo

        zoo.keep_freed_memory()  # as the zoo command runs; MACE's process gets the same settings
        run(args)
    if records(args.out):
        args.out.with_suffix(".md").write_text(table(args.out, args.molecule))
        figure(args.out, args.out.with_suffix(".png"))
        print(table(args.out, args.molecule))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["_mace-md"]:
        mace_md(sys.argv[2:])
    else:
        sys.exit(main())
