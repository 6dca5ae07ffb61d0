"""What labelling through Dask workers costs on top of bare PySCF, per core, and how it scales from 1 to 2 workers.

The same structures (one molecule displaced by 0.02 Å, as MD frames are) are labelled three ways,
each SCF from PySCF's default guess and on one OpenMP thread:

* **bare PySCF**: a loop in this process (build the molecule, SCF, gradient), the floor;
* **Dask, 1 worker** and **Dask, 2 workers**: :func:`zoo.datagen.jobs.run` of
  :func:`zoo.datagen.label_task.label_structure` on a local Dask cluster, what ``zoo label`` runs.

Per-structure time in steady state is what the overhead target (at most 10 % over bare PySCF)
is about: for Dask, the time between the arrival of the k-th result (k workers) and the last,
per structure after it, so that starting the cluster and each worker's first, slower SCF are
left out; they are reported apart, as the startup time (start of the run to the first result),
and for bare PySCF the first structure is a warm-up. The end-to-end time of ``zoo label`` itself
(``zoo.datagen.labelling.label``: startup, SCFs, atomic file appends) is reported for each way too.

The machine's load average is recorded next to the numbers: on a shared machine other jobs slow
the workers more than the single bare loop. Run from the repository root::

    python benchmarks/qc/dask_throughput.py      # writes benchmarks/qc/results/dask_throughput.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def structures(molecule: str, n: int, seed: int = 0) -> list:
    from zoo.datagen.sampling import displace, from_smiles

    smiles = {"water": "O", "ethanol": "CCO", "benzene": "c1ccccc1"}[molecule]
    return displace(from_smiles(smiles, seed=seed), n, amplitude=0.02, seed=seed)


def bare_pyscf(frames, level, properties) -> list[float]:
    """Seconds per structure of a plain PySCF loop in this process (one thread)."""
    from pyscf import lib

    times = []
    with lib.with_omp_threads(1):
        for atoms in frames:
            start = time.perf_counter()
            mf = level.build_scf(level.build_mole(atoms.numbers, atoms.positions))
            mf.kernel()
            assert mf.converged
            if "forces" in properties:
                gradient = mf.nuc_grad_method()
                if hasattr(gradient, "grid_response"):
                    gradient.grid_response = True  # as zoo label computes DFT forces
                gradient.kernel()
            times.append(time.perf_counter() - start)
    return times


def through_dask(frames, level, properties, n_workers: int) -> dict:
    """Arrival times of the results of ``label_structure`` tasks on ``n_workers`` local Dask workers."""
    from zoo.datagen import jobs
    from zoo.datagen.label_task import label_structure

    tasks = [(atoms, level, properties, 100, 1e-10, None) for atoms in frames]
    start = time.perf_counter()
    arrivals = []
    for outcome in jobs.run(label_structure, tasks, jobs.Workers(n_workers), name="benchmark"):
        assert outcome.error is None and "result" in outcome.value, outcome
        arrivals.append(time.perf_counter() - start)
    steady = (arrivals[-1] - arrivals[n_workers - 1]) / (len(arrivals) - n_workers)
    return {"startup_s": arrivals[0], "steady_s_per_structure": steady, "total_s": arrivals[-1]}


def end_to_end(frames, level, properties, workers, folder: Path) -> float:
    """Wall seconds of ``zoo.datagen.labelling.label`` from start to finish."""
    from zoo.datagen.labelling import label

    start = time.perf_counter()
    summary = label(frames, level, folder / f"labels-{workers.n}.extxyz", properties=properties, progress=False,
                    reuse_density=False, workers=workers)
    assert summary["labelled"] == len(frames)
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default="ethanol", choices=("water", "ethanol", "benzene"))
    parser.add_argument("--structures", type=int, default=24, help="structures per way (default 24)")
    parser.add_argument("--xc", default="pbe")
    parser.add_argument("--basis", default="def2-svp")
    parser.add_argument("--properties", default="energy,forces")
    parser.add_argument("-o", "--output", type=Path, default=RESULTS / "dask_throughput",
                        help="writes OUTPUT.json and OUTPUT.md (default benchmarks/qc/results/dask_throughput)")
    args = parser.parse_args(argv)
    if args.structures < 3:
        parser.error("--structures must be at least 3 (two workers, and a steady state after them)")

    from zoo.datagen import jobs
    from zoo.qc.level import LevelOfTheory, pyscf_version

    level = LevelOfTheory(xc=args.xc, basis=args.basis, grid_level=3)
    properties = [p.strip() for p in args.properties.split(",")]
    frames = structures(args.molecule, args.structures)
    load_before = os.getloadavg()

    bare_times = bare_pyscf(frames, level, properties)
    bare = float(np.mean(bare_times[1:]))  # the first structure warms PySCF up
    dask_runs = {n: through_dask(frames, level, properties, n) for n in (1, 2)}
    with tempfile.TemporaryDirectory() as folder:
        label_seconds = {n: end_to_end(frames, level, properties, jobs.Workers(n), Path(folder)) for n in (0, 1, 2)}

    result = {
        "molecule": args.molecule, "atoms": len(frames[0]), "structures": len(frames), "level": level.describe(),
        "properties": properties, "pyscf_version": pyscf_version(), "python": platform.python_version(),
        "machine": platform.machine(), "cores": os.cpu_count(), "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "bare_pyscf_s_per_structure": bare,
        "dask": {str(n): run for n, run in dask_runs.items()},
        "dask_overhead_1_worker": dask_runs[1]["steady_s_per_structure"] / bare - 1,
        "speedup_2_over_1_workers": dask_runs[1]["steady_s_per_structure"] / dask_runs[2]["steady_s_per_structure"],
        "zoo_label_end_to_end_s": {("in process" if n == 0 else f"Dask, {n} worker{'s' if n > 1 else ''}"): s
                                   for n, s in label_seconds.items()},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(markdown(result))
    print(markdown(result), file=sys.stderr)
    return 0


def markdown(r: dict) -> str:
    one, two = r["dask"]["1"], r["dask"]["2"]
    lines = [
        f"# Labelling through Dask workers vs bare PySCF: {r['molecule']} ({r['atoms']} atoms), {r['level']}, "
        f"{'+'.join(r['properties'])}",
        "",
        f"{r['structures']} structures, one OpenMP thread per SCF, PySCF {r['pyscf_version']}, {r['cores']} cores "
        f"(load average {r['load_average_before'][0]:.1f} before, {r['load_average_after'][0]:.1f} after). "
        "Made by `python benchmarks/qc/dask_throughput.py`.",
        "",
        "| way | steady s / structure | startup s (to the first result) | structures / hour |",
        "|---|---|---|---|",
        f"| bare PySCF loop | {r['bare_pyscf_s_per_structure']:.3f} | – | {3600 / r['bare_pyscf_s_per_structure']:.0f} |",
        f"| Dask, 1 worker | {one['steady_s_per_structure']:.3f} | {one['startup_s']:.1f} | "
        f"{3600 / one['steady_s_per_structure']:.0f} |",
        f"| Dask, 2 workers | {two['steady_s_per_structure']:.3f} | {two['startup_s']:.1f} | "
        f"{3600 / two['steady_s_per_structure']:.0f} |",
        "",
        f"- Dask overhead per core (1 worker, steady state): {100 * r['dask_overhead_1_worker']:+.1f} % "
        "(target: at most +10 %).",
        f"- Scaling from 1 to 2 workers: {r['speedup_2_over_1_workers']:.2f}x (ideal 2.00x on two free cores).",
        "- `zoo label` end to end (startup, SCFs, file appends): "
        + ", ".join(f"{way}: {seconds:.1f} s" for way, seconds in r["zoo_label_end_to_end_s"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
