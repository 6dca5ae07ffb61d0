"""What a base model's guess costs, and whether a coarser XC grid for its base changes the SCF.

A model with ``base: minao_fock`` builds F[D_MINAO] on the user's SCF object before predicting.
Its two-electron integrals are reused by the SCF, but the XC part of that Fock build is
extra work. This benchmark makes the guess of each molecule twice, with the base's XC on the SCF's
own grid and on a coarser one (``model_guess(..., base_grid_level=...)``), and records per
molecule: the base's difference between the two grids (µEh), the guess's wall time, the SCF's
cycles and wall time from each guess, and the converged energies' difference.

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/guess_cost.py --model runs/hamiltonian_qm9_occupied/pretrained \\
        --data data/qm9_hamiltonian/large_test_b3lyp5_def2svp.h5 --molecules 12 --coarse 1 \\
        --json benchmarks/hamiltonian/results/guess_cost.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from zoo.data import keys, read_hamiltonian_h5
from zoo.interfaces import model_guess
from zoo.qc.guess import base_hamiltonian_of


def guess_and_scf(model, z, pos, base_grid_level: int | None) -> dict:
    """One user's run: a fresh SCF object, the model's guess on it, then the SCF from that guess."""
    mf = model.level.build_scf(model.level.build_mole(z, pos))
    tic = time.perf_counter()
    dm0 = model_guess(model, mf, base_grid_level=base_grid_level)
    guess_s = time.perf_counter() - tic
    tic = time.perf_counter()
    energy = mf.kernel(dm0=dm0)
    return {"guess_s": guess_s, "scf_s": time.perf_counter() - tic, "cycles": int(mf.cycles),
            "converged": bool(mf.converged), "energy": float(energy)}


def measure(model, dataset, molecules: int, coarse: int) -> dict:
    rows = []
    for index in range(min(molecules, len(dataset))):
        data = dataset[index]
        z, pos = data[keys.ATOMIC_NUMBERS].numpy(), data[keys.POSITIONS].numpy()
        mf = model.level.build_scf(model.level.build_mole(z, pos))
        difference = np.abs(base_hamiltonian_of(model.base, mf, grid_level=coarse) - base_hamiltonian_of(model.base, mf))
        if index % 2:  # alternate which goes first, so that neither always runs on warm caches
            cheap, full = guess_and_scf(model, z, pos, coarse), guess_and_scf(model, z, pos, None)
        else:
            full, cheap = guess_and_scf(model, z, pos, None), guess_and_scf(model, z, pos, coarse)
        rows.append({"index": index, "n_atoms": len(z), "n_ao": mf.mol.nao,
                     "base_difference_mae_uEh": float(difference.mean()) * 1e6,
                     "base_difference_max_uEh": float(difference.max()) * 1e6,
                     "full_grid": full, "coarse_grid": cheap,
                     "energy_difference": abs(full["energy"] - cheap["energy"])})
        print(f"[guess_cost] {index + 1}/{molecules}: base differs by {rows[-1]['base_difference_mae_uEh']:.2f} µEh "
              f"(max {rows[-1]['base_difference_max_uEh']:.1f}); guess {full['guess_s']:.2f} -> {cheap['guess_s']:.2f} s, "
              f"cycles {full['cycles']} -> {cheap['cycles']}", file=sys.stderr, flush=True)

    def total(which, field):
        return sum(r[which][field] for r in rows)

    return {
        "molecules": len(rows), "grid_level": model.level.grid_level, "coarse_grid_level": coarse,
        "base_difference_mae_uEh_mean": statistics.mean(r["base_difference_mae_uEh"] for r in rows),
        "base_difference_max_uEh": max(r["base_difference_max_uEh"] for r in rows),
        "guess_s_mean": {"full": total("full_grid", "guess_s") / len(rows), "coarse": total("coarse_grid", "guess_s") / len(rows)},
        "cycles_total": {"full": total("full_grid", "cycles"), "coarse": total("coarse_grid", "cycles")},
        "wall_s_total": {which: total(f"{which}_grid", "guess_s") + total(f"{which}_grid", "scf_s") for which in ("full", "coarse")},
        "all_converged": all(r[w]["converged"] for r in rows for w in ("full_grid", "coarse_grid")),
        "max_energy_difference": max(r["energy_difference"] for r in rows),
        "rows": rows,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a Hamiltonian model with a base (folder or registry name)")
    parser.add_argument("--data", required=True, help="a labelled Hamiltonian file (its geometries are used)")
    parser.add_argument("--molecules", type=int, default=12, help="the first molecules of --data")
    parser.add_argument("--coarse", type=int, default=1, help="the coarser PySCF grid level for the base's XC part")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    from zoo.registry import load

    model = load(args.model).model
    if getattr(model, "base", None) is None:
        parser.error(f"{args.model} predicts H without a base Hamiltonian: its guess builds none")
    result = {"model": args.model, "data": args.data, **measure(model, read_hamiltonian_h5(args.data), args.molecules, args.coarse)}
    summary = {k: v for k, v in result.items() if k != "rows"}
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
