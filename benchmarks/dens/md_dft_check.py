"""DFT single points along a force field's own MD trajectory: does the model follow DFT where its
trajectory goes, also where the training data never went?

Runs ``--ps`` of NVT MD (500 K, 0.5 fs, as ``md_stability.py``) with the model from the first frame
of the molecule's DFT test trajectory, then computes PBE/def2-SVP (grid 3, the labels' level)
energies and forces with PySCF at every ``--every``-th recorded frame, and prints per frame the
distances of the watched hydrogen to the two oxygens (malonaldehyde's enol proton: atoms 5, 0, 4),
the energy change from the first frame under the model and under DFT, and the force MAE. The
table goes to ``results/md_dft_check/<molecule>.md``.

    OMP_NUM_THREADS=1 python benchmarks/dens/md_dft_check.py --molecule malonaldehyde \\
        --model malonaldehyde-pbe-def2svp --ps 0.1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main(argv=None) -> None:
    import ase.io
    import torch

    import zoo
    from zoo.analysis.md_stability import md_stability_replicas
    from zoo.datagen.label_task import compute_labels
    from zoo.qc.level import LevelOfTheory

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecule", default="malonaldehyde")
    parser.add_argument("--model", default="malonaldehyde-pbe-def2svp")
    parser.add_argument("--ps", type=float, default=0.1)
    parser.add_argument("--every", type=int, default=2, help="every this many recorded frames (10 MD steps each)")
    parser.add_argument("--watch", type=int, nargs=3, default=[5, 0, 4], metavar=("H", "A", "B"),
                        help="a hydrogen and two atoms whose distances to it are printed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    reference = ase.io.read(ROOT / "data" / args.molecule / f"{args.molecule}_pbe_def2svp_test.extxyz", index=":")
    calculator = zoo.load(args.model).as_calculator()
    # a threshold no bond reaches: the whole trajectory, whatever moves
    result = md_stability_replicas([reference[0]], None, np.stack([a.positions for a in reference]),
                                   time_ps=args.ps, predict=calculator.predict, seed=args.seed, threshold=100.0)[0]
    symbols = reference[0].get_chemical_symbols()
    level = LevelOfTheory(method="rks", xc="pbe", basis="def2-svp", grid_level=3)  # the labels' level
    h, a, b = args.watch
    rows = []
    for frame in range(0, len(result.positions), args.every):
        positions = result.positions[frame]
        structure = reference[0].copy()
        structure.positions = positions
        predicted = calculator.predict([structure])[0]
        dft = compute_labels(structure, level, ("energy", "forces"))
        rows.append((frame, np.linalg.norm(positions[h] - positions[a]), np.linalg.norm(positions[h] - positions[b]),
                     predicted["energy"], dft["energy"], float(np.abs(predicted["forces"] - dft["forces"]).mean())))
        print(f"frame {frame}: done", flush=True)
    lines = [f"# {args.model} along its own MD trajectory against PBE/def2-SVP", "",
             f"`python benchmarks/dens/md_dft_check.py --molecule {args.molecule} --model {args.model} --ps {args.ps:g}`: "
             f"NVT 500 K, 0.5 fs, from frame 0 of the DFT test trajectory, seed {args.seed}; energies relative "
             "to the first frame.", "",
             f"| frame (10 steps) | {symbols[h]}{h}–{symbols[a]}{a} (Å) | {symbols[h]}{h}–{symbols[b]}{b} (Å) "
             "| model ΔE (meV) | PBE ΔE (meV) | |ΔE error| (meV) | force MAE (meV/Å) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    first_model, first_dft = rows[0][3], rows[0][4]
    for frame, d_a, d_b, e_model, e_dft, force_mae in rows:
        de_model, de_dft = 1e3 * (e_model - first_model), 1e3 * (e_dft - first_dft)
        lines.append(f"| {frame} | {d_a:.2f} | {d_b:.2f} | {de_model:.1f} | {de_dft:.1f} | {abs(de_model - de_dft):.1f} "
                     f"| {1e3 * force_mae:.1f} |")
    out = HERE / "results" / "md_dft_check" / f"{args.molecule}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
