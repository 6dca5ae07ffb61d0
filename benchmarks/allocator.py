"""Training steps with glibc's default allocator and with zoo.keep_freed_memory().

Two training steps at a recipe's size, each timed in fresh processes that alternate between the
two allocator settings (``--rounds`` of each), one thread:

- ``hamiltonian``: a float32 HamiltonianTask step of ``hamiltonian_qm9_occupied``'s model (32
  channels, 2 layers, a correction to the MINAO Fock matrix, occupied-space loss 0.05) on 8 labelled
  QM9 molecules of data/qm9_hamiltonian/small_b3lyp5_def2svp.h5 (``make data-qm9-hamiltonian``);
- ``force_field``: a force-field step (energy and forces, double backward) of the ethanol recipe's
  many-body backbone on 8 ethanol frames (data/ethanol, committed).

Reports the median step time (ms) of each process, and the system CPU time of the whole
process (the page faults and ``mmap``/``munmap`` calls the tuning removes).

    OMP_NUM_THREADS=1 python benchmarks/allocator.py --rounds 3    # writes benchmarks/results/allocator.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results" / "allocator.md"
HAMILTONIAN_DATA = ROOT / "data" / "qm9_hamiltonian" / "small_b3lyp5_def2svp.h5"
ETHANOL = ROOT / "data" / "ethanol" / "ethanol_pbe_def2svp_train.extxyz"


def hamiltonian_step():
    import torch
    from torch_geometric.data import Batch

    from zoo.data import read_hamiltonian_h5
    from zoo.models import EquivariantBackbone, HamiltonianModel
    from zoo.qc import LevelOfTheory
    from zoo.tasks import HamiltonianTask

    data = read_hamiltonian_h5(HAMILTONIAN_DATA, indices=list(range(8)), dtype=torch.float32)
    batch = Batch.from_data_list([data[i] for i in range(8)])
    backbone = EquivariantBackbone(["H", "C", "N", "O", "F"], channels=32, l_max=2, num_layers=2, cutoff=5.0,
                                   parity="full", avg_num_neighbors=8.0)
    model = HamiltonianModel(backbone, LevelOfTheory(xc="b3lyp5", basis="def2-svp"), head_channels=32,
                             pair_cutoff=10.0, base="minao_fock")
    task = HamiltonianTask(model, occupied_weight=0.05)
    task.log = lambda *args, **kwargs: None  # outside a Trainer
    optimizer = torch.optim.AdamW(task.parameters(), 1e-3)
    model(batch)  # the base Hamiltonians, computed once as a fit does before its first step

    def step():
        loss = task.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


def force_field_step():
    import ase.io
    import torch
    from torch_geometric.data import Batch

    from zoo.data import AtomicData
    from zoo.models import EquivariantBackbone, ForceFieldModel

    backbone = EquivariantBackbone(["H", "C", "O"], channels=32, l_max=2, num_layers=3, cutoff=5.0, num_radial=8,
                                   avg_num_neighbors=8.0, interaction="many_body")
    model = ForceFieldModel(backbone, hidden=64)
    batch = Batch.from_data_list([AtomicData.from_ase(a) for a in ase.io.read(ETHANOL, index=":8")])
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)

    def step():
        out = model(batch.clone())
        loss = out["energy"].square().mean() + out["forces"].square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return step


STEPS = {"hamiltonian": hamiltonian_step, "force_field": force_field_step}


def child(kind: str, tuned: bool, repeats: int) -> dict:
    import torch

    import zoo

    applied = zoo.keep_freed_memory() if tuned else False
    torch.set_num_threads(1)
    torch.manual_seed(0)
    step = STEPS[kind]()
    for _ in range(2):  # warm-up
        step()
    before = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        step()
        times.append(time.perf_counter() - tic)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"kind": kind, "tuned": tuned, "applied": applied, "median_ms": 1e3 * statistics.median(times),
            "system_fraction": (after.ru_stime - before.ru_stime) / max(sum(times), 1e-9)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(STEPS), choices=list(STEPS))
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting, alternating")
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per process")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--child", nargs=2, metavar=("KIND", "TUNED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1] == "1", args.repeats)))
        return
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    environment["OMP_NUM_THREADS"] = "1"
    records = []
    for kind in args.kinds:
        for round_ in range(args.rounds):
            for tuned in (False, True):
                output = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats), "--child", kind,
                                         "1" if tuned else "0"], capture_output=True, text=True, check=True,
                                        env=environment).stdout
                records.append(json.loads(output.strip().splitlines()[-1]))
                print(f"[allocator] {kind} round {round_ + 1} {'tuned' if tuned else 'default'}: "
                      f"{records[-1]['median_ms']:.0f} ms", file=sys.stderr, flush=True)
    lines = [f"# Training steps with glibc's default allocator and with zoo.keep_freed_memory()", "",
             f"`OMP_NUM_THREADS=1 python benchmarks/allocator.py --rounds {args.rounds} --repeats {args.repeats}` "
             f"({platform.machine()}, {os.cpu_count()} CPUs, one thread; processes alternate between the settings). "
             "Median step time per process (ms); system time as a fraction of the timed steps.", "",
             "| step | allocator | step time (ms), per process | median | system time |", "|---|---|---|---:|---:|"]
    for kind in args.kinds:
        for tuned in (False, True):
            rows = [r for r in records if r["kind"] == kind and r["tuned"] == tuned]
            times = [r["median_ms"] for r in rows]
            lines.append(f"| {kind} | {'keep_freed_memory' if tuned else 'glibc default'} | "
                         f"{', '.join(f'{t:.0f}' for t in times)} | {statistics.median(times):.0f} | "
                         f"{statistics.mean(r['system_fraction'] for r in rows):.0%} |")
    Path(args.output).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
