"""Evaluate a trained Hamiltonian model on labelled test structures, SCF acceleration included.

Reads a model (a folder written by ``zoo test``, or a registry name) and a labelled Hamiltonian
file, optionally restricted to the test set of a saved split, then reports: H MAE (all / on-site /
off-site, µEh), occupied orbital-energy MAE, orbital cosine similarity, HOMO/LUMO/gap errors, and
PySCF SCF cycles and wall time started from the model's density versus PySCF's MINAO guess.

Study 5(i), water (the test frames of the run's split):

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/evaluate.py \\
        --model runs/hamiltonian_water/pretrained --split runs/hamiltonian_water/version_0/split.npz \\
        --json benchmarks/hamiltonian/results/water_supervised.json

Study 5(ii), the QM9-derived out-of-distribution test molecules (the whole file):

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/evaluate.py --model runs/hamiltonian_qm9_sct/pretrained \\
        --data data/qm9_hamiltonian/large_test_b3lyp5_def2svp.h5 --scf 20 --json qm9_sct.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from zoo.data import keys, read_hamiltonian_h5
from zoo.data.splits import load_split
from zoo.metrics import hamiltonian_mae, onsite_mask, orbital_metrics, scf_acceleration

DATA = Path(__file__).resolve().parents[2] / "data" / "water" / "water_b3lyp5_def2svp.h5"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint folder (zoo.registry layout) or registry name")
    parser.add_argument("--split", help="split.npz of the training run: evaluate its test set (default: every structure)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--scf", type=int, default=50, help="test structures to run SCF on (both guesses), the first ones")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    from pyscf import lib

    from zoo.registry import load

    lib.num_threads(1)
    torch.set_num_threads(1)
    task = load(args.model)
    model = task.model.double()
    dataset = read_hamiltonian_h5(args.data, expect=model.metadata(), dtype=torch.float64)
    test = load_split(args.split, n=len(dataset)).test if args.split else np.arange(len(dataset))

    predictions, targets, overlaps, masks, n_occ, scf = [], [], [], [], [], []
    start = time.perf_counter()
    for k, index in enumerate(test.tolist()):
        data = dataset[index]
        z, pos = data[keys.ATOMIC_NUMBERS].numpy(), data[keys.POSITIONS].numpy()
        out = model.predict((z, pos))
        n = out["hamiltonian"].shape[0]
        predictions.append(torch.as_tensor(out["hamiltonian"]))
        targets.append(data[keys.HAMILTONIAN].reshape(n, n))
        overlaps.append(data[keys.OVERLAP].reshape(n, n))
        masks.append(onsite_mask(z, model.level.basis))
        n_occ.append(int(data[keys.N_ELECTRONS]) // 2)
        if k < args.scf:
            scf.append(scf_acceleration((z, pos), model.level, out["density_matrix"]))
    predict_s = time.perf_counter() - start

    h = hamiltonian_mae(predictions, targets, masks)
    orbitals = orbital_metrics(predictions, targets, overlaps, n_occ)
    cycles_model = [r["cycles_guess"] for r in scf]
    cycles_minao = [r["cycles_minao"] for r in scf]
    result = {
        "model": args.model, "data": args.data, "test_frames": len(test), "scf_frames": len(scf),
        "hamiltonian_mae_all": h["all"], "hamiltonian_mae_diagonal": h["diagonal"],
        "hamiltonian_mae_off_diagonal": h["off_diagonal"], **orbitals,
        "scf_cycles_model_mean": statistics.mean(cycles_model), "scf_cycles_minao_mean": statistics.mean(cycles_minao),
        "scf_cycle_ratio_mean": statistics.mean(r["cycle_ratio"] for r in scf),
        "scf_time_model_s_mean": statistics.mean(r["time_guess_s"] for r in scf),
        "scf_time_minao_s_mean": statistics.mean(r["time_minao_s"] for r in scf),
        "scf_all_converged": all(r["converged"] for r in scf),
        "scf_max_energy_difference": max(abs(r["energy_difference"]) for r in scf),
        "wall_s_predict_and_scf": predict_s,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
