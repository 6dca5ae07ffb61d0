"""Inference speed of the published models on the CPU: eager, compiled, exported.

For each published model (``zoo list``; ``--models`` to choose), a fixed set of molecules of its
domain (RDKit ETKDG conformers of fixed SMILES, seeded) goes through the model:

- ``single``: one molecule per call, the use of an ASE calculator or a guess for one SCF;
- ``batch``: all molecules in one call, the use of screening.

Each is timed in eager mode, after ``zoo.models.compile_for_inference`` (``compiled``) and, for
``single``, through the ``torch.export`` program of ``zoo.models.export_model`` (``exported``,
run by torch's graph interpreter) and that program compiled ahead of time by AOTInductor
(``aoti``, the deployment path; Hamiltonian models cannot be exported). Every call computes what the model's forward does:
energies and forces (force fields, the consistency model's energy model), H (Hamiltonian
models, under ``torch.no_grad``), targets (property models). The neighbour list is computed
once, before timing, for all three (the consistency model builds its graph of all atom pairs
inside its forward, in eager and compiled mode, and outside the exported program). A water
Hamiltonian with a PySCF base caches the base per geometry, so the timings after warm-up leave
PySCF out.

Warm-up passes are not timed; the time of the first compiled pass minus a timed one is reported
as the compile time (the inductor caches on disk are disabled in the worker, so this is a cold
compile), and the times of ``export_model`` and of AOTInductor as the export times. Each model runs in its own
process.

    python benchmarks/inference/speed.py                       # writes benchmarks/inference/results/speed.md
    python benchmarks/inference/speed.py --models ethanol-dens-pbe-def2svp --molecules 4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "speed.md"

#: SMILES of the molecules each published model is timed on (QM9 models: the first QM9 rows).
SMILES = {
    "ethanol-dens-pbe-def2svp": ["CCO"],
    "malonaldehyde-dens-pbe-def2svp": ["OC=CC=O"],
    "hamiltonian-water-b3lyp5-def2svp": ["O"],
    "hamiltonian-water-b3lyp5-def2svp-v2": ["O"],
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="published model names (default: all)")
    parser.add_argument("--molecules", type=int, default=16, help="molecules per model")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the molecules")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # JSON config of one model's measurement
    return parser.parse_args(argv)


def molecules(name: str, model, count: int):
    """``count`` fixed molecules for the model ``name`` as AtomicData, atoms in SMILES order (with
    the molecular graph for the consistency model)."""
    from zoo.data import AtomicData, keys
    from zoo.data.molgraph import mol_from_smiles
    from zoo.data.readers.qm9 import read_qm9
    from zoo.models import ConsistencyModel
    from zoo.models.consistency import etkdg_conformer

    smiles = SMILES.get(name) or [d[keys.SMILES] for d in read_qm9(limit=count, properties=[])]
    dtype = next(model.parameters()).dtype
    out = []
    for i in range(count):
        text = smiles[i % len(smiles)]
        positions = etkdg_conformer(text, seed=i)
        if isinstance(model, ConsistencyModel):
            out.append(model.graph_data(text, positions))
        else:
            numbers = [atom.GetAtomicNum() for atom in mol_from_smiles(text).GetAtoms()]
            out.append(AtomicData.from_arrays(numbers, positions, dtype=dtype))
    return out


def measure(config: dict) -> dict:
    """All measurements of one model, in the current process."""
    import torch
    from torch_geometric.data import Batch

    import zoo
    from zoo.data import RadiusGraph, keys
    from zoo.models import HamiltonianModel, compile_for_inference, export_inputs, export_model

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    task = zoo.load(config["model"])
    model = task.model
    dtype = next(model.parameters()).dtype
    structures = molecules(config["model"], model, config["molecules"])
    if config["family"] != "consistency":
        cutoff = model.backbone.cutoff if hasattr(model, "backbone") else model.cutoff
        structures = [RadiusGraph(cutoff)(s) for s in structures]
    singles = [Batch.from_data_list([s]) for s in structures]
    batch = Batch.from_data_list(structures)
    grad = config["family"] != "hamiltonian"  # forces need autograd; H does not

    def call(function, inputs):
        with torch.set_grad_enabled(grad):
            out = function(inputs)
        return {k: v.detach() for k, v in out.items()}

    def passes(function, inputs_list, n):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            for inputs in inputs_list:
                call(function, inputs)
            times.append(time.perf_counter() - start)
        return times

    result = {**config, "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads(),
              "atoms": statistics.mean(s[keys.POSITIONS].shape[0] for s in structures)}
    for scenario, inputs in (("single", singles), ("batch", [batch])):
        passes(model, inputs, config["warmup"])
        result[f"{scenario}_eager"] = statistics.median(passes(model, inputs, config["repeats"])) / len(structures)

    compile_for_inference(model)
    for scenario, inputs in (("single", singles), ("batch", [batch])):
        (first,) = passes(model, inputs, 1)
        passes(model, inputs, max(config["warmup"] - 1, 0))
        timed = statistics.median(passes(model, inputs, config["repeats"]))
        result[f"{scenario}_compiled"] = timed / len(structures)
        # no recompilation (a batch after dynamic-shape singles) leaves timing noise, not a negative time
        result[f"{scenario}_compile_seconds"] = max(first - timed, 0.0)

    if isinstance(model, HamiltonianModel):  # not exportable (docs/export.md)
        return result
    start = time.perf_counter()
    program = export_model(model, structures[0])
    result["export_seconds"] = time.perf_counter() - start
    tensors = [tuple(export_inputs(model, s).values()) for s in structures]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        package = torch._inductor.aoti_compile_and_package(program, package_path=str(Path(folder) / "model.pt2"))
        result["aoti_seconds"] = time.perf_counter() - start
        runners = {"exported": program.module(), "aoti": torch._inductor.aoti_load_package(package)}
        for kind, runner in runners.items():
            passes(lambda inputs, runner=runner: runner(*inputs), tensors, config["warmup"])
            timed = passes(lambda inputs, runner=runner: runner(*inputs), tensors, config["repeats"])
            result[f"single_{kind}"] = statistics.median(timed) / len(structures)
    return result


def table(results: list[dict]) -> str:
    lines = [
        "| model | dtype | atoms (mean) | one molecule per call (ms): eager / compiled / exported / AOTInductor "
        "| speed-up compiled | all in one batch (ms per molecule): eager / compiled | speed-up "
        "| compile (s): single + batch | export + AOTInductor (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "export_seconds" in r:
            exported = f"{1e3 * r['single_exported']:.2f} / {1e3 * r['single_aoti']:.2f}"
            export = f"{r['export_seconds']:.0f} + {r['aoti_seconds']:.0f}"
        else:
            exported, export = "— / —", "not exportable"
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['atoms']:.1f} "
            f"| {1e3 * r['single_eager']:.2f} / {1e3 * r['single_compiled']:.2f} / {exported} "
            f"| {r['single_eager'] / r['single_compiled']:.2f}x "
            f"| {1e3 * r['batch_eager']:.2f} / {1e3 * r['batch_compiled']:.2f} "
            f"| {r['batch_eager'] / r['batch_compiled']:.2f}x "
            f"| {r['single_compile_seconds']:.0f} + {r['batch_compile_seconds']:.0f} | {export} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    import torch

    from zoo.registry import load_manifest

    entries = {entry.name: entry for entry in load_manifest().models}
    names = args.models or sorted(entries)
    unknown = sorted(set(names) - set(entries))
    if unknown:
        raise SystemExit(f"unknown models {unknown}; published: {sorted(entries)}")
    load = os.getloadavg()
    results, failed = [], []
    # a cold compile in every worker: inductor's caches on disk would hide the compile time
    env = {**os.environ, "TORCHINDUCTOR_FORCE_DISABLE_CACHES": "1"}
    for name in names:
        family = {"force-field": "force_field"}.get(entries[name].family, entries[name].family)
        config = {"model": name, "family": family, "molecules": args.molecules, "repeats": args.repeats,
                  "warmup": args.warmup, "threads": args.threads}
        worker = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)], capture_output=True,
                                text=True, env=env)
        if worker.returncode:  # one model's failure costs its row, not the others' measurements
            failed.append(name)
            print(f"{name:<40} FAILED:\n{worker.stderr[-2000:]}", flush=True)
            continue
        results.append(json.loads(worker.stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"{name:<40} single {1e3 * r['single_eager']:.1f} -> {1e3 * r['single_compiled']:.1f} ms, "
              f"batch {1e3 * r['batch_eager']:.1f} -> {1e3 * r['batch_compiled']:.1f} ms per molecule", flush=True)
    load_after = os.getloadavg()

    command = "python benchmarks/inference/speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = "\n".join([
        "# Inference speed on the CPU: eager, compiled, exported",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({results[0]['threads']} threads)",
        f"- Load average (1 min) before/after: {load[0]:.1f} / {load_after[0]:.1f} (other jobs on the machine slow "
        "the calls)",
        f"- {args.molecules} molecules per model (RDKit ETKDG conformers, seeded), {args.repeats} timed passes "
        f"after {args.warmup} warm-up passes; median time per molecule. Neighbour lists precomputed; force "
        "fields and the consistency model compute energies and forces, Hamiltonian models H.",
        "- compile: first compiled pass minus a timed one, cold (no inductor cache); export: `export_model`; "
        "AOTInductor: `torch._inductor.aoti_compile_and_package` of the exported program",
        "",
        table(results),
        "",
        *([f"Failed (no row): {', '.join(failed)}; the command prints why.", ""] if failed else []),
    ])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    args.output.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
