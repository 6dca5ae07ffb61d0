"""Markdown tables of ``evaluate.py`` results: one summary row per model and file, then the SCF per molecule.

    python benchmarks/hamiltonian/evaluation_table.py benchmarks/hamiltonian/results/qm9_occupied_1094_large_test.json

Errors in µEh; cycle ratios are total cycles over total (a user's saving over many molecules),
with the per-molecule range; wall ratios include the guess (model, base Hamiltonian, grids).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def _models(path: Path):
    """(model, its figures, its molecules with an SCF) of one evaluate.py result file."""
    for model, r in json.loads(path.read_text())["models"].items():
        yield model, r, [m for m in r["molecules"] if "cycles" in m]


def summary_rows(path: Path) -> list[str]:
    rows = []
    for model, r, scf in _models(path):
        extra = [m["cycles"] - m["minao_cycles"] for m in scf]
        rows.append(
            f"| {model} | {path.name} | {r['test_frames']} | {r['hamiltonian_mae_all']:.0f} | {r['hamiltonian_mae_diagonal']:.0f} "
            f"| {r['hamiltonian_mae_off_diagonal']:.0f} | {r['orbital_energy_mae']:,.0f} | {r['orbital_cosine']:.3f} "
            f"| {r['homo_error']:,.0f} | {r['gap_error']:,.0f} | {len(scf)} "
            f"| {r['scf_cycle_ratio']:.3f}× ({r['scf_cycle_ratio_range'][0]:.2f}–{r['scf_cycle_ratio_range'][1]:.2f}) "
            f"| {sum(e < 0 for e in extra)} / {sum(e == 0 for e in extra)} / {sum(e > 0 for e in extra)} "
            f"| {r['guess_s_mean']:.1f} | {r['wall_ratio_with_guess']:.3f}× "
            f"| {'yes' if r['scf_all_converged'] else 'NO'} |")
    return rows


def molecule_rows(path: Path) -> list[str]:
    rows = []
    for model, r, scf in _models(path):
        saved = [m["minao_cycles"] - m["cycles"] for m in scf]
        cycles = ", ".join(f"{m['cycles']}/{m['minao_cycles']}" for m in scf)
        h = [m["hamiltonian_mae"] for m in r["molecules"]]
        rows.append(f"- {model} on {path.name}: cycles saved per molecule, median {statistics.median(saved):g} "
                    f"(range {min(saved)} to {max(saved)}); H MAE per molecule median {statistics.median(h):.0f} µEh "
                    f"(range {min(h):.0f}–{max(h):.0f}); guess / MINAO cycles: {cycles}.")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="JSON files written by evaluate.py --json")
    args = parser.parse_args(argv)
    print("| model | file | molecules | H MAE | on-site | off-site | ε_occ MAE | ψ cosine | HOMO error | gap error "
          "| SCF molecules | SCF cycles vs MINAO | fewer / same / more cycles | guess (s) | wall with guess vs MINAO "
          "| all converged |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|")
    for path in args.results:
        print("\n".join(summary_rows(path)))
    print()
    for path in args.results:
        print("\n".join(molecule_rows(path)))


if __name__ == "__main__":
    main()
