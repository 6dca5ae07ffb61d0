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

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/evaluate.py --model runs/hamiltonian_qm9/pretrained \\
        --model runs/hamiltonian_qm9_control/pretrained --model runs/hamiltonian_qm9_sct/pretrained \\
        --data data/qm9_hamiltonian/large_test_b3lyp5_def2svp.h5 --scf 16 --json benchmarks/hamiltonian/results/qm9_ood.json
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
from zoo.metrics import hamiltonian_mae, onsite_mask, orbital_metrics
from zoo.qc.guess import scf_cycles

DATA = Path(__file__).resolve().parents[2] / "data" / "water" / "water_b3lyp5_def2svp.h5"


def evaluate(model, dataset, test, n_scf: int, minao: list[dict]) -> dict:
    """Figures of one model on ``test``; SCF from its density on the first ``n_scf`` structures.

    ``minao`` caches PySCF's runs from the MINAO guess (one per structure), shared by every model.
    """
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
        if k < n_scf:
            mol = model.level.build_mole(z, pos)
            if len(minao) <= k:
                minao.append(scf_cycles(mol, model.level))
            scf.append(scf_cycles(mol, model.level, dm0=out["density_matrix"]))
    seconds = time.perf_counter() - start
    h = hamiltonian_mae(predictions, targets, masks)
    pairs = list(zip(scf, minao))
    result = {"test_frames": len(test), "scf_frames": len(scf),
              "hamiltonian_mae_all": h["all"], "hamiltonian_mae_diagonal": h["diagonal"],
              "hamiltonian_mae_off_diagonal": h["off_diagonal"],
              **orbital_metrics(predictions, targets, overlaps, n_occ), "wall_s_predict_and_scf": seconds}
    if pairs:
        result.update({
            "scf_cycles_model": [g["cycles"] for g, _ in pairs],
            "scf_cycles_minao": [m["cycles"] for _, m in pairs],
            "scf_cycles_model_mean": statistics.mean(g["cycles"] for g, _ in pairs),
            "scf_cycles_minao_mean": statistics.mean(m["cycles"] for _, m in pairs),
            "scf_cycle_ratio_mean": statistics.mean(g["cycles"] / max(m["cycles"], 1) for g, m in pairs),
            "scf_time_model_s_mean": statistics.mean(g["time_s"] for g, _ in pairs),
            "scf_time_minao_s_mean": statistics.mean(m["time_s"] for _, m in pairs),
            "scf_all_converged": all(g["converged"] and m["converged"] for g, m in pairs),
            "scf_max_energy_difference": max(abs(g["energy"] - m["energy"]) for g, m in pairs),
        })
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, action="append",
                        help="checkpoint folder (zoo.registry layout) or registry name; repeat to compare models "
                             "(the MINAO runs are shared)")
    parser.add_argument("--split", help="split.npz of the training run: evaluate its test set (default: every structure)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--scf", type=int, default=50, help="test structures to run SCF on (both guesses), the first ones")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    from pyscf import lib

    from zoo.registry import load

    lib.num_threads(1)
    torch.set_num_threads(1)
    models = {ref: load(ref).model.double() for ref in args.model}
    first = next(iter(models.values()))
    dataset = read_hamiltonian_h5(args.data, expect=first.metadata(), dtype=torch.float64)
    test = load_split(args.split, n=len(dataset)).test if args.split else np.arange(len(dataset))
    minao: list[dict] = []
    result = {"data": args.data, "split": args.split,
              "models": {ref: evaluate(model, dataset, test, args.scf, minao) for ref, model in models.items()}}
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
