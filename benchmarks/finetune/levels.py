"""Per-level errors of the general organic force fields (issue 22) on the held-out molecules' frames,
which carry labels at two levels of theory: PBE/def2-SVP (``energy``, ``forces``) and the GFN2-xTB
of the MD that made them (``xtb_energy``, ``xtb_forces``).

Each model predicts with each of its energy heads (``task.model.level``; a single-level model with
its one), and each prediction is scored against both levels' forces,
and against its own level's energies (energy MAE per atom; energies of two levels have different
zeros, so they are not compared across). GFN2-xTB itself against PBE is the row every model is
measured against: what the xTB level alone gets wrong at the DFT level.

    python benchmarks/finetune/levels.py --models organic-dens-gfn2-xtb runs/organic_multifidelity/pretrained
    python benchmarks/finetune/levels.py --models organic-dens-pbe-def2svp --out /tmp/levels.md

Writes a Markdown table (``--out``, default ``results/levels.md``) and prints it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FRAMES = ROOT / "data/organic/test_md500_pbe_def2svp.extxyz"
#: the labels the frames carry, by level of theory: (energy, forces) per frame
LABELS = ("pbe/def2-svp", "gfn2-xtb")


def labels(frames) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    return {"pbe/def2-svp": (np.array([a.get_potential_energy() for a in frames]), [a.get_forces() for a in frames]),
            "gfn2-xtb": (np.array([a.info["xtb_energy"] for a in frames]), [a.arrays["xtb_forces"] for a in frames])}


def force_mae(forces: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """meV/Å over every component."""
    return 1000 * float(np.mean(np.abs(np.concatenate(forces) - np.concatenate(reference))))


def rows(models: list[str], frames) -> list[dict]:
    """One row per energy head of every model, after GFN2-xTB itself: force MAE against each
    level's labels, energy MAE per atom (meV) against the head's own level's."""
    import zoo

    atoms = np.array([len(a) for a in frames])
    by_level = labels(frames)
    xtb_forces = by_level["gfn2-xtb"][1]
    found = [{"model": "GFN2-xTB itself", "head": "gfn2-xtb", "energy": 0.0,
              **{level: force_mae(xtb_forces, by_level[level][1]) for level in LABELS}}]
    for name in models:
        task = zoo.load(name)
        for head in task.model.levels or [None]:  # None: one unnamed level
            if head is not None:
                task.model.level = head
            predicted = task.predict(frames)
            energies = np.array([p["energy"] for p in predicted])
            forces = [np.asarray(p["forces"]) for p in predicted]
            row = {"model": name, "head": head or "(one)", **{level: force_mae(forces, by_level[level][1]) for level in LABELS}}
            if head in by_level:
                row["energy"] = 1000 * float(np.mean(np.abs(energies - by_level[head][0]) / atoms))
            found.append(row)
    return found


def table(found: list[dict], frames: int, path: Path) -> str:
    lines = [f"# Per-level errors on the held-out molecules' frames ({frames} frames of `{path.relative_to(ROOT)}`)",
             "", "`python benchmarks/finetune/levels.py` (its docstring says how). Force MAE in meV/Å; energy MAE "
             "per atom in meV, against the labels of the head's own level.", "",
             "| model | energy head | forces vs PBE/def2-SVP | forces vs GFN2-xTB | energy vs its level |",
             "|---|---|---:|---:|---:|"]
    for row in found:
        energy = f"{row['energy']:.1f}" if "energy" in row else "–"
        lines.append(f"| {row['model']} | {row['head']} | {row['pbe/def2-svp']:.1f} | {row['gfn2-xtb']:.1f} | {energy} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help="registry names or model folders")
    parser.add_argument("--frames", type=Path, default=FRAMES)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "levels.md")
    args = parser.parse_args(argv)
    import ase.io

    frames = ase.io.read(args.frames, index=":")
    text = table(rows(args.models, frames), len(frames), args.frames.resolve())
    args.out.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
