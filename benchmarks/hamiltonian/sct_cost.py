"""What one self-consistency training step costs on QM9-size molecules, with the affordable-SCT options.

Loads a Hamiltonian model (a folder written by ``zoo test`` or a registry name), takes a batch of
unlabelled larger molecules, and times one optimizer step (forward, SCT loss, backward through the
eigensolver and PySCF's response, Adam) for each setting of the SCT targets: grid level 3 / 1,
with and without density fitting; cold (Fock builders made on first sight of the geometries:
grids, integrals) and warm (cached builders), one thread. Also reports the SCT loss of each
setting at the same weights, i.e. how far the cheaper targets are from the exact ones.

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/sct_cost.py --model runs/hamiltonian_qm9/pretrained \\
        --json benchmarks/hamiltonian/results/qm9_sct_cost.json
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from zoo.data import keys
from zoo.data.readers import read_structures

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"grid 3": {"sct_grid_level": 3}, "grid 1": {"sct_grid_level": 1},
            "grid 1 + DF": {"sct_grid_level": 1, "sct_density_fitting": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default=str(ROOT / "data" / "qm9_hamiltonian" / "large_unlabelled.extxyz"))
    parser.add_argument("--molecules", type=int, default=4)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from pyscf import lib

    from zoo.registry import load
    from zoo.tasks import HamiltonianTask

    lib.num_threads(1)
    pretrained = load(args.model).double()
    batch = Batch.from_data_list(list(read_structures(args.data, indices=range(args.molecules), dtype=torch.float64)))
    result = {"model": args.model, "molecules": args.molecules, "atoms": int(batch.num_nodes), "settings": {}}
    for name, options in SETTINGS.items():
        task = HamiltonianTask(copy.deepcopy(pretrained.model), mode="sct", **options)
        optimizer = torch.optim.Adam(task.parameters(), lr=1e-5)
        times, losses = [], []
        for _ in range(2):  # cold, then warm
            start = time.perf_counter()
            loss = task.self_consistency_loss(batch, task(batch)[keys.HAMILTONIAN])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            times.append(time.perf_counter() - start)
            losses.append(float(loss))
        # the first loss is at the model's weights, the same for every setting
        result["settings"][name] = {"cold_s": times[0], "warm_s": times[1], "sct_loss": losses[0]}
        print(name, result["settings"][name], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
