"""Accuracy and cost of one Fock build H[D] (zoo.qc.fock.FockBuilder) against the exact reference.

The reference is b3lyp5/def2-SVP on PySCF's grid level 3 without density fitting, QH9's level
of theory. Each variant builds H[D] at the reference's converged SCF density D, so the error is
the error of the build itself (what a self-consistency target would carry), reported in µEh
(1e-6 Hartree) as max |ΔH| and mean |ΔH| over all matrix elements. Also timed: one build and one
backward (the response kernel, ``gen_response``), as CPU seconds of this process on one thread
(other jobs on a shared machine do not inflate it), median of ``--repeats`` after one warm-up.
Setup (grids, DF tensors, core Hamiltonian) is done once per builder and not timed.

Run from the repository root::

    python benchmarks/qc/fock_accuracy.py                       # markdown table on stdout
    python benchmarks/qc/fock_accuracy.py --out docs/table.md   # also written to a file
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from ase.build import molecule as ase_molecule
from pyscf import lib

from zoo.qc.fock import FockBuilder
from zoo.qc.level import LevelOfTheory, pyscf_version

REFERENCE = LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=3)
VARIANTS = {
    "grid 3 (reference)": REFERENCE,
    "grid 2": LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=2),
    "grid 1": LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=1),
    "grid 0": LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=0),
    "grid 3 + density fitting": LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=3, density_fitting=True),
    "grid 1 + density fitting": LevelOfTheory(xc="b3lyp5", basis="def2-svp", grid_level=1, density_fitting=True),
    "xc='b3lyp' (VWN-RPA), grid 3": LevelOfTheory(xc="b3lyp", basis="def2-svp", grid_level=3),
}
MOLECULES = {"water": "H2O", "ethanol": "CH3CH2OH"}


def cpu_seconds(function, repeats: int) -> float:
    function()  # warm-up: lazy initialisation inside PySCF
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return statistics.median(times)


def measure(name: str, repeats: int) -> list[dict]:
    atoms = ase_molecule(MOLECULES[name])
    reference = FockBuilder(atoms, REFERENCE)
    reference.mf.kernel()
    density = reference.mf.make_rdm1()
    exact = reference.fock_numpy(density)
    perturbation = np.random.default_rng(0).normal(size=density.shape)
    perturbation = 0.5 * (perturbation + perturbation.T)
    rows = []
    for label, level in VARIANTS.items():
        builder = reference if level == REFERENCE else FockBuilder(reference.mol, level)
        error = np.abs(builder.fock_numpy(density) - exact) * 1e6
        rows.append({
            "molecule": f"{name} ({builder.n_ao} AOs)",
            "variant": label,
            "max": error.max(),
            "mean": error.mean(),
            "build": cpu_seconds(lambda: builder.fock_numpy(density), repeats),
            "backward": cpu_seconds(lambda: builder.response_numpy(density, perturbation), repeats),
        })
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| molecule | H[D] build | max abs error (µEh) | mean abs error (µEh) | build (CPU s) | backward (CPU s) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['molecule']} | {r['variant']} | {r['max']:.2f} | {r['mean']:.3f} | "
                     f"{r['build']:.3f} | {r['backward']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--molecules", nargs="+", default=list(MOLECULES), choices=list(MOLECULES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this file")
    args = parser.parse_args()
    lib.num_threads(1)
    rows = [row for name in args.molecules for row in measure(name, args.repeats)]
    text = f"PySCF {pyscf_version()}, one thread, reference {REFERENCE.describe()}\n\n{table(rows)}\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
