"""How far DeNS's targets on a corrupted structure are from that structure's own energy and forces.

DeNS (the official MD17 recipe, and zoo's) trains a conservative model on a corrupted structure
toward the *original* structure's energy and the original forces of its uncorrupted atoms, with the
original forces of the corrupted atoms encoded as inputs. For a model whose forces are -dE/dR these
targets are not the corrupted structure's physics: the network must infer the displacement from
the encoded forces to fit them. This script measures that gap, with a converged force field as
the potential for every test frame and with PBE/def2-SVP (the labels' level, PySCF) for a few,
beside the model's own test error, for each noise scale ``--sigma``.

    OMP_NUM_THREADS=1 python benchmarks/dens/target_shift.py --molecule ethanol \\
        --model ethanol-pbe-def2svp-v2 --sigma 0.025 0.05 0.1 --dft 8

Writes ``results/target_shift/<molecule>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def corrupted(structure, rng: np.random.Generator, corrupt_ratio: float, sigma: float):
    """A copy of ``structure`` with each atom noised with probability ``corrupt_ratio`` by N(0, sigma²)
    per coordinate (DeNS's draw for a structure chosen for denoising), at least one atom; and the mask."""
    n = len(structure)
    mask = rng.random(n) < corrupt_ratio
    if not mask.any():
        mask[rng.integers(n)] = True
    copy = structure.copy()
    copy.positions[mask] += rng.normal(0.0, sigma, size=(int(mask.sum()), 3))
    return copy, mask


def shifts(original: dict, noised: dict, mask: np.ndarray) -> tuple[float, float]:
    """|E(noised) - E(original)| (meV) and the mean |F(noised) - F(original)| over the uncorrupted
    atoms' components (meV/Å): the errors of DeNS's energy and force targets."""
    energy = 1e3 * abs(noised["energy"] - original["energy"])
    forces = 1e3 * float(np.abs(noised["forces"][~mask] - original["forces"][~mask]).mean())
    return energy, forces


def main(argv=None) -> None:
    import ase.io
    import torch

    import zoo
    from zoo.datagen.label_task import compute_labels
    from zoo.qc.level import LevelOfTheory

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default="ethanol")
    parser.add_argument("--model", default="ethanol-pbe-def2svp-v2")
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.025, 0.05, 0.1], help="noise scales (Å)")
    parser.add_argument("--corrupt-ratio", type=float, default=0.25)
    parser.add_argument("--dft", type=int, default=8, help="frames checked with PBE/def2-SVP at each sigma")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    frames = ase.io.read(ROOT / "data" / args.molecule / f"{args.molecule}_pbe_def2svp_test.extxyz", index=":")
    calculator = zoo.load(args.model).as_calculator()
    level = LevelOfTheory(method="rks", xc="pbe", basis="def2-svp", grid_level=3)  # the labels' level
    labels = [{"energy": a.get_potential_energy(), "forces": a.get_forces()} for a in frames]
    predicted = calculator.predict(frames)
    model_error = {
        "energy_mae_meV": 1e3 * float(np.mean([abs(p["energy"] - t["energy"]) for p, t in zip(predicted, labels)])),
        "forces_mae_meV_A": 1e3 * float(np.mean([np.abs(p["forces"] - t["forces"]).mean()
                                                 for p, t in zip(predicted, labels)])),
    }
    rows = []
    for sigma in args.sigma:
        rng = np.random.default_rng(args.seed)
        noised, masks = zip(*(corrupted(a, rng, args.corrupt_ratio, sigma) for a in frames))
        by_model = [shifts(o, n, m) for o, n, m in zip(predicted, calculator.predict(list(noised)), masks)]
        by_dft = []
        for structure, label, mask in list(zip(noised, labels, masks))[: args.dft]:
            by_dft.append(shifts(label, compute_labels(structure, level, ("energy", "forces")), mask))
            print(f"sigma {sigma}: DFT {len(by_dft)}/{args.dft}", flush=True)
        row = {"sigma_A": sigma, "frames": len(frames), "corrupted_atoms_mean": float(np.mean([m.sum() for m in masks])),
               "energy_shift_meV_model": float(np.mean([e for e, _ in by_model])),
               "forces_shift_meV_A_model": float(np.mean([f for _, f in by_model]))}
        if by_dft:
            row.update(dft_frames=len(by_dft), energy_shift_meV_dft=float(np.mean([e for e, _ in by_dft])),
                       forces_shift_meV_A_dft=float(np.mean([f for _, f in by_dft])),
                       energy_shift_meV_model_same_frames=float(np.mean([e for e, _ in by_model[: len(by_dft)]])),
                       forces_shift_meV_A_model_same_frames=float(np.mean([f for _, f in by_model[: len(by_dft)]])))
        rows.append(row)
        print(json.dumps(row), flush=True)

    command = (f"python benchmarks/dens/target_shift.py --molecule {args.molecule} --model {args.model} --sigma "
               f"{' '.join(f'{s:g}' for s in args.sigma)} --corrupt-ratio {args.corrupt_ratio:g} --dft {args.dft}")
    lines = [f"# DeNS targets on corrupted {args.molecule} structures against the structures' own energy and forces", "",
             f"`{command}`: every test frame corrupted once as DeNS corrupts a structure it denoises (each atom "
             f"with probability {args.corrupt_ratio:g}, at least one; Gaussian noise of sigma per coordinate); "
             "the error of DeNS's targets (the original energy, the original forces of the uncorrupted atoms) "
             f"measured with `{args.model}` as the potential on all frames and with PBE/def2-SVP on the first "
             f"{args.dft}. The model's own test error: energy {model_error['energy_mae_meV']:.2f} meV, forces "
             f"{model_error['forces_mae_meV_A']:.2f} meV/Å.", "",
             "| sigma (Å) | corrupted atoms | energy target error, model (meV) | force target error, model (meV/Å) "
             "| energy, PBE (meV) | forces, PBE (meV/Å) | the model on those frames (meV, meV/Å) |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    for row in rows:
        dft = (f"{row['energy_shift_meV_dft']:.1f} | {row['forces_shift_meV_A_dft']:.1f} | "
               f"{row['energy_shift_meV_model_same_frames']:.1f}, {row['forces_shift_meV_A_model_same_frames']:.1f}"
               if "dft_frames" in row else "– | – | –")
        lines.append(f"| {row['sigma_A']:g} | {row['corrupted_atoms_mean']:.2f} | {row['energy_shift_meV_model']:.1f} "
                     f"| {row['forces_shift_meV_A_model']:.1f} | {dft} |")
    out = HERE / "results" / "target_shift" / f"{args.molecule}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, "model_error": model_error, "rows": rows},
                                                   indent=1) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
