"""Training throughput of the equivariant backbone on real QM9 molecules.

For each interaction (``two_body``, NequIP's; ``many_body``, MACE's product basis of body order
``correlation + 1``, at the same channels) and batch size, batches of molecules drawn from the
first QM9 rows of ``qm9pack`` (edges precomputed within the cutoff, as the data module does) go
through one training step:

- ``energy``: forward, a scalar loss on the node features, backward to the parameters;
- ``forces``: forward, forces = -dE/dpos with ``create_graph=True``, a loss on the forces,
  backward to the parameters (the double backward of force-field training).

Each configuration runs in its own process so that its peak memory can be read: the peak
resident set size minus the one before the first step on CPU, ``max_memory_allocated`` on CUDA.

    python benchmarks/backbone_throughput.py            # writes benchmarks/results/backbone_throughput.md
    python benchmarks/backbone_throughput.py --batch-sizes 32 --interactions two_body many_body \
        --output benchmarks/results/backbone_product_basis.md
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
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "backbone_throughput.md"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--modes", nargs="+", default=["energy", "forces"], choices=["energy", "forces"])
    parser.add_argument("--molecules", type=int, default=2000, help="read the first N QM9 molecules")
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--l-max", type=int, default=2)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--cutoff", type=float, default=5.0)
    parser.add_argument("--parity", default="natural")
    parser.add_argument("--interactions", nargs="+", default=["two_body"], choices=["two_body", "many_body"])
    parser.add_argument("--correlation", type=int, default=3, help="of the many_body interaction")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps (each on a different batch)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # JSON config of one measurement
    return parser.parse_args(argv)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(config: dict) -> dict:
    """One (batch size, mode) measurement, in the current process."""
    import torch
    from torch_geometric.data import Batch

    from zoo.data import RadiusGraph
    from zoo.data.readers.qm9 import read_qm9
    from zoo.models import EquivariantBackbone

    if config["threads"]:
        torch.set_num_threads(config["threads"])
    device = torch.device(config["device"])
    molecules = read_qm9(limit=config["molecules"], properties=[])
    graph = RadiusGraph(config["cutoff"])
    generator = torch.Generator().manual_seed(config["batch_size"])
    n_steps = config["warmup"] + config["repeats"]
    batches = []
    for _ in range(n_steps):
        pick = torch.randperm(len(molecules), generator=generator)[: config["batch_size"]].tolist()
        batches.append(Batch.from_data_list([graph(molecules[i].clone()) for i in pick]).to(device))
    torch.manual_seed(0)
    model = EquivariantBackbone(
        ["H", "C", "N", "O", "F"], channels=config["channels"], l_max=config["l_max"],
        num_layers=config["layers"], cutoff=config["cutoff"], parity=config["parity"],
        interaction=config["interaction"], correlation=config["correlation"],
    ).to(device)
    scalars = model.irreps_out.slices()[0]

    def step(batch):
        if config["mode"] == "forces":
            batch.pos.requires_grad_(True)
        features = model(batch).node_features
        energy = features[:, scalars].sum() + features.square().sum()
        if config["mode"] == "forces":
            (forces,) = torch.autograd.grad(-energy, batch.pos, create_graph=True)
            loss = forces.square().mean()
        else:
            loss = energy
        model.zero_grad(set_to_none=True)
        loss.backward()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    baseline = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i, batch in enumerate(batches):
        sync()
        start = time.perf_counter()
        step(batch)
        sync()
        if i >= config["warmup"]:
            times.append(time.perf_counter() - start)
    timed = batches[config["warmup"]:]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - baseline  # ru_maxrss is KiB
    return {
        **config,
        "atoms": statistics.mean(b.num_nodes for b in timed),
        "edges": statistics.mean(b.edge_index.shape[1] for b in timed),
        "seconds": statistics.median(times),
        "best_seconds": min(times),
        "peak_mib": peak,
        "parameters": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
    }


def table(results: list[dict]) -> str:
    lines = [
        "| interaction | parameters | batch | mode | atoms (mean) | edges (mean) | step (ms), median / best "
        "| structures/s, median / best | ms per layer, best | peak memory (MiB) |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {_interaction(r)} | {r['parameters']:,} | {r['batch_size']} | {r['mode']} | {r['atoms']:.0f} "
            f"| {r['edges']:.0f} "
            f"| {1e3 * r['seconds']:.0f} / {1e3 * r['best_seconds']:.0f} "
            f"| {r['batch_size'] / r['seconds']:.0f} / {r['batch_size'] / r['best_seconds']:.0f} "
            f"| {1e3 * r['best_seconds'] / r['layers']:.0f} | {r['peak_mib']:.0f} |"
        )
    return "\n".join(lines)


def _interaction(result: dict) -> str:
    if result["interaction"] == "many_body":
        return f"many_body (correlation {result['correlation']})"
    return result["interaction"]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    import e3nn
    import torch

    load = os.getloadavg()
    results = []
    for interaction in args.interactions:
        for batch_size in args.batch_sizes:
            for mode in args.modes:
                config = {
                    "batch_size": batch_size, "mode": mode, "molecules": args.molecules, "channels": args.channels,
                    "l_max": args.l_max, "layers": args.layers, "cutoff": args.cutoff, "parity": args.parity,
                    "interaction": interaction, "correlation": args.correlation,
                    "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads, "device": args.device,
                }
                out = subprocess.run([sys.executable, __file__, "--worker", json.dumps(config)],
                                     check=True, capture_output=True, text=True).stdout
                results.append(json.loads(out.strip().splitlines()[-1]))
                print(f"{interaction:<9} batch {batch_size:>3} {mode:<6} {results[-1]['seconds']:.3f} s", flush=True)
    load_after = os.getloadavg()

    command = "python benchmarks/backbone_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = "\n".join([
        "# Backbone training throughput",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"- Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__} ({results[0]['threads']} threads), e3nn {e3nn.__version__}, "
        f"device {args.device}",
        f"- Load average (1 min) before/after: {load[0]:.1f} / {load_after[0]:.1f} (other jobs on the machine slow the steps)",
        f"- Model: `EquivariantBackbone(channels={args.channels}, l_max={args.l_max}, num_layers={args.layers}, "
        f"cutoff={args.cutoff}, parity={args.parity!r}, interaction=..., correlation={args.correlation})`, "
        "elements H C N O F",
        f"- Data: random batches from the first {args.molecules} QM9 molecules (qm9pack), edges within the cutoff "
        f"precomputed; {args.repeats} timed steps, each on a new batch, after {args.warmup} warm-up steps",
        "- energy: forward + backward of a loss on the node features; forces: forward, forces by autograd "
        "(create_graph), backward of a force loss",
        "- step: wall time, median and best (the best is the least disturbed by other jobs on the machine)",
        "- Peak memory: increase of the peak resident set size over the step loop (CPU), "
        "or `torch.cuda.max_memory_allocated` (CUDA)",
        "",
        table(results),
        "",
    ])
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
