"""The committed drug-like test molecules (data/druglike): what data/README.md says of them holds."""

from pathlib import Path

from zoo.data.validity import structure_validity
from zoo.datagen.files import read_structures

FOLDER = Path(__file__).resolve().parents[2] / "data" / "druglike"


def test_every_molecule_of_the_smiles_file_has_its_xtb_minimum_outside_qm9():
    names = [line.split()[1] for line in (FOLDER / "druglike.smi").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    minima = read_structures(FOLDER / "druglike_xtb.extxyz")
    assert [m.info["name"] for m in minima] == names and len(names) == 41
    for minimum in minima:
        heavy = int((minimum.numbers > 1).sum())
        assert set(minimum.numbers) <= {1, 6, 7, 8, 9} and 15 <= len(minimum) <= 25 and 10 <= heavy <= 14
        defects = structure_validity(minimum, minimum.info["smiles"]).defects
        # bonds all in range; a close contact only as an intramolecular hydrogen bond
        assert all(d.kind == "clash" and "H" in d.symbols and {"O", "N"} & set(d.symbols) for d in defects), \
            (minimum.info["name"], defects)
