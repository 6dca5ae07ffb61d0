"""Write the exact training/validation structures of a zoo run for mace-torch (peer comparison).

mace-torch reads extended XYZ with the labels under names of its choosing; ``REF_energy`` and
``REF_forces`` avoid any clash with ASE's calculator fields. The structures are those of the zoo
run's saved split (``split.npz``), so both codes train on the same 950 and validate on the same 50.

    python benchmarks/dens/prepare_mace.py runs/.../version_0/split.npz data/ethanol/ethanol_pbe_def2svp_train.extxyz out/
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io

from zoo.data import load_split


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split", help="split.npz of the zoo run")
    parser.add_argument("source", help="the extxyz the zoo run read")
    parser.add_argument("out", help="folder for train.extxyz and valid.extxyz")
    args = parser.parse_args(argv)
    images = ase.io.read(args.source, index=":")
    split = load_split(args.split, n=len(images))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, indices in (("train", split.train), ("valid", split.val)):
        chosen = []
        for i in indices:
            atoms = images[int(i)]
            energy, forces = atoms.get_potential_energy(), atoms.get_forces()
            atoms = atoms.copy()  # drops the calculator: the labels live in info/arrays only
            atoms.info = {"REF_energy": energy}
            atoms.arrays["REF_forces"] = forces
            chosen.append(atoms)
        ase.io.write(out / f"{name}.extxyz", chosen, format="extxyz")
        print(f"{out / f'{name}.extxyz'}: {len(chosen)} structures")


if __name__ == "__main__":
    main()
