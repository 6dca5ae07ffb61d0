"""SCT sanity run on water: the self-consistency loss decreases, and what an SCT step costs.

Starting from a trained water model (the supervised one), it

1. times one optimizer step (batch of 8 frames, forward + backward + Adam) supervised, and
   self-consistent with H[D] at grid level 3 and at grid level 1, cold (Fock builders made on
   first sight of a geometry: grids, integrals) and warm (cached builders);
2. runs SCT alone (no labels) for ``--steps`` steps on 16 training frames at grid level 1, logging
   the SCT loss, and measures the test H MAE against the labels before and after.

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/water_sct_sanity.py \\
        --model runs/hamiltonian_water/pretrained --split runs/hamiltonian_water/version_0/split.npz \\
        --json benchmarks/hamiltonian/results/water_sct_sanity.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from torch_geometric.data import Batch

from zoo.data import keys, read_hamiltonian_h5
from zoo.data.splits import load_split
from zoo.metrics import hamiltonian_mae
from zoo.tasks import HamiltonianTask, Output

DATA = Path(__file__).resolve().parents[2] / "data" / "water" / "water_b3lyp5_def2svp.h5"


def _test_mae(model, batch) -> float:
    with torch.no_grad():
        return hamiltonian_mae(model(batch)[keys.HAMILTONIAN], batch[keys.HAMILTONIAN])["all"]


def _step(task, optimizer, batch, sct: bool) -> tuple[float, float]:
    start = time.perf_counter()
    optimizer.zero_grad()
    prediction = task.model(batch)[keys.HAMILTONIAN]
    if sct:
        loss = task.self_consistency_loss(batch, prediction)
    else:
        loss = task.outputs[0].compute_loss(prediction, batch[keys.HAMILTONIAN])
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--split", required=True)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--json")
    args = parser.parse_args()

    from pyscf import lib

    from zoo.registry import load

    lib.num_threads(1)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    trained = load(args.model).model.double()
    dataset = read_hamiltonian_h5(DATA, expect=trained.metadata(), dtype=torch.float64)
    split = load_split(args.split, n=len(dataset))
    train = [dataset[i] for i in split.train[:32].tolist()]
    batches = [Batch.from_data_list(train[k:k + 8]) for k in range(0, 16, 8)]
    timing_batches = [Batch.from_data_list(train[k:k + 8]) for k in range(16, 32, 8)]
    test = Batch.from_data_list([dataset[i] for i in split.test.tolist()])
    supervised_output = [Output(name=keys.HAMILTONIAN, loss="mae_mse")]

    # 1. cost of a step
    timings = {}
    model = copy.deepcopy(trained)
    task = HamiltonianTask(model, mode="supervised", outputs=supervised_output)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0)  # lr 0: time the step, keep the model
    timings["supervised_s"] = statistics.median(_step(task, optimizer, timing_batches[0], False)[0] for _ in range(5))
    for grid in (3, 1):
        task = HamiltonianTask(model, mode="sct", sct_grid_level=grid, outputs=supervised_output)
        cold = _step(task, optimizer, timing_batches[grid == 1], True)[0]  # a fresh batch per grid: cold
        warm = statistics.median(_step(task, optimizer, timing_batches[grid == 1], True)[0] for _ in range(3))
        timings[f"sct_grid{grid}_cold_s"], timings[f"sct_grid{grid}_warm_s"] = cold, warm

    # 2. SCT alone from the supervised model, grid level 1, labels unused
    model = copy.deepcopy(trained)
    task = HamiltonianTask(model, mode="sct", sct_grid_level=1, outputs=supervised_output)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    mae_before = _test_mae(model, test)
    losses = [_step(task, optimizer, batches[s % len(batches)], True)[1] for s in range(args.steps)]
    with torch.no_grad():
        final = [float(task.self_consistency_loss(b, model(b)[keys.HAMILTONIAN])) for b in batches]
    result = {
        "model": args.model, "batch_size": 8, "timings": timings, "sct_grid_level": 1, "lr": args.lr,
        "sct_loss_per_step": losses, "sct_loss_final_mean": statistics.mean(final),
        "test_hamiltonian_mae_before": mae_before, "test_hamiltonian_mae_after": _test_mae(model, test),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
