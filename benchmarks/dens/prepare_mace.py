"""Write the exact training/validation structures of a zoo run for mace-torch (peer comparison).

mace-torch reads extended XYZ with the labels under names of its choosing; ``REF_energy`` and
``REF_forces`` avoid any clash with ASE's calculator fields. The structures are those of the zoo
run's saved split (``split.npz``), so both codes train on the same 950 and validate on the same 50.

The labelled training file may still be growing (a labelling job appends to it): a split records
how many structures the file had when the zoo run read it (``n``), and only those first ``n``
frames are read, which are the zoo run's dataset as long as the file is only ever appended to.

    python benchmarks/dens/prepare_mace.py runs/.../version_0/split.npz data/ethanol/ethanol_pbe_def2svp_train.extxyz out/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase
import ase.io

from zoo.data import load_split


def mace_atoms(atoms):
    """A copy of ``atoms`` with its energy and forces under ``REF_energy``/``REF_forces`` only."""
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    # a fresh Atoms: no calculator and no other per-atom arrays (e.g. xtb_forces) to confuse readers
    copy = ase.Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
    copy.info["REF_energy"] = energy
    copy.arrays["REF_forces"] = forces
    return copy


def write_mace_files(split_path, source, out) -> dict[str, Path]:
    """Write ``train.extxyz`` and ``valid.extxyz`` of the split into ``out``; returns their paths.

    Raises ``ValueError`` if ``source`` has fewer frames than the split was made for, or if the
    split knows no dataset size and does not match the whole file.
    """
    split = load_split(split_path)
    images = ase.io.read(source, index=":" if split.n is None else f":{split.n}")
    split.check(len(images))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, indices in (("train", split.train), ("valid", split.val)):
        chosen = [mace_atoms(images[int(i)]) for i in indices]
        paths[name] = out / f"{name}.extxyz"
        ase.io.write(paths[name], chosen, format="extxyz")
        print(f"{paths[name]}: {len(chosen)} structures")
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split", help="split.npz of the zoo run")
    parser.add_argument("source", help="the extxyz the zoo run read")
    parser.add_argument("out", help="folder for train.extxyz and valid.extxyz")
    args = parser.parse_args(argv)
    write_mace_files(args.split, args.source, args.out)


if __name__ == "__main__":
    main()
