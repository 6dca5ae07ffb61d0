import csv
import time

import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

from zoo.data import keys, units
from zoo.data.readers.qm9 import QM9_COLUMNS, QM9_PROPERTIES, qm9pack_files, read_qm9

HEADER = (
    "XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,Harmonic_Freq_cmi,"
    "RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,"
    "ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,Enthalphy_298K_au,GibbsFreeEnergy_298K_au,"
    "Heatcapacity_Cv_cal_mol_K"
)

WATER = {
    "XYZ_file": "dsgdb9nsd_000003.xyz", "Index": 3, "SMILES": "O", "InChi": "InChI=1S/H2O/h1H2", "N_atoms": 3,
    "Stoichiometry": "[2,0,0,1,0]", "Elements": "['O','H','H']",
    "XYZ_Ang": "[[-0.0343604951,0.9775395708,0.0076015923],[0.0647664923,0.0205721989,0.0015346341],"
               "[0.8717903737,1.3007924048,0.]]",
    "Mulliken_pop": "[-0.589706,0.294853,0.294853]", "Harmonic_Freq_cmi": "[1671.4222,3803.6305,3907.698]",
    "RotA_GHz": 799.58812, "RotB_GHz": 437.90386, "RotC_GHz": 282.94545, "Dipole_debye": 1.8511,
    "Polarizability_bohr3": 6.31, "HOMO_au": -0.2928, "LUMO_au": 0.0687, "HOMO_LUMO_gap_au": 0.3615,
    "R2_bohr2": 19.0002, "ZPVE_au": 0.021375, "InternalEnergy_0K_au": -76.404702,
    "InternalEnergy_298K_au": -76.401867, "Enthalphy_298K_au": -76.400922, "GibbsFreeEnergy_298K_au": -76.422349,
    "Heatcapacity_Cv_cal_mol_K": 6.002,
}
HCN = dict(WATER, XYZ_file="dsgdb9nsd_000005.xyz", Index=5, SMILES="C#N", N_atoms=3, Elements="['C','N','H']",
           InternalEnergy_0K_au=-93.411888)


def write_qm9_csv(path, rows, columns=QM9_COLUMNS):
    """A CSV in qm9pack's exact format: strings quoted, numbers bare."""
    with open(path, "w", newline="") as handle:
        handle.write(",".join(columns) + "\n")  # the header is not quoted
        writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\n")
        for row in rows:
            writer.writerow([row[c] for c in columns])
    return path


def test_header_is_qm9packs():
    assert ",".join(QM9_COLUMNS) == HEADER
    with open(qm9pack_files()[0]) as handle:
        assert handle.readline().strip() == HEADER


def test_reads_a_csv_in_the_qm9pack_format_with_units(tmp_path):
    path = write_qm9_csv(tmp_path / "mini.csv", [WATER, HCN])
    with open(path) as handle:  # the test file looks like the real one
        assert handle.readline().strip() == HEADER
        assert handle.readline().startswith('"dsgdb9nsd_000003.xyz",3,"O",')
    ds = read_qm9(path=path)
    assert len(ds) == 2
    water = ds[0]
    assert water.z.tolist() == [8, 1, 1]
    assert water.pos.shape == (3, 3)
    assert water.pos[2, 2].item() == 0.0
    assert water.smiles == "O" and water[keys.QM9_ID].tolist() == [3]
    assert water[keys.U0].item() == pytest.approx(-76.404702 * units.HARTREE, rel=1e-6)
    assert water[keys.GAP].item() == pytest.approx(0.3615 * 27.211386, rel=1e-6)
    assert water[keys.MU].item() == pytest.approx(1.8511, rel=1e-6)  # Debye, kept
    assert water[keys.ALPHA].item() == pytest.approx(6.31, rel=1e-6)  # bohr^3, kept
    assert water[keys.CV].item() == pytest.approx(6.002, rel=1e-6)
    assert set(QM9_PROPERTIES) <= set(water.keys())
    assert ds[1].z.tolist() == [6, 7, 1]
    assert ds.metadata["units"][keys.U0] == "eV"
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch[keys.QM9_ID].tolist() == [3, 5]  # not offset by batching
    assert batch[keys.SMILES] == ["O", "C#N"]
    assert batch[keys.U0].shape == (2,)


def test_indices_limit_and_properties(tmp_path):
    path = write_qm9_csv(tmp_path / "mini.csv", [WATER, HCN, WATER])
    assert [d.smiles for d in read_qm9(path=path, indices=[1, 0])] == ["C#N", "O"]
    assert len(read_qm9(path=path, limit=2)) == 2
    only = read_qm9(path=path, properties=[keys.U0])[0]
    assert keys.U0 in only and keys.HOMO not in only
    with pytest.raises(IndexError, match=r"indices \[7\] out of range; the files hold 3"):
        read_qm9(path=path, indices=[7])
    with pytest.raises(ValueError, match="unknown QM9 properties"):
        read_qm9(path=path, properties=["energy"])


def test_missing_columns_are_named(tmp_path):
    columns = [c for c in QM9_COLUMNS if c not in ("XYZ_Ang", "HOMO_au")]
    path = write_qm9_csv(tmp_path / "bad.csv", [WATER], columns)
    with pytest.raises(ValueError, match=r"missing columns \['XYZ_Ang', 'HOMO_au'\]"):
        read_qm9(path=path)


def test_bad_rows_are_errors_that_name_the_line(tmp_path):
    unknown = write_qm9_csv(tmp_path / "unknown.csv", [dict(WATER, Elements="['O','Xx','H']")])
    with pytest.raises(ValueError, match=r"unknown.csv:2.*unknown element symbol 'Xx'"):
        read_qm9(path=unknown)
    short = write_qm9_csv(tmp_path / "short.csv", [dict(WATER, N_atoms=4)])
    with pytest.raises(ValueError, match="N_atoms is 4 but there are 3 elements"):
        read_qm9(path=short)
    blank = write_qm9_csv(tmp_path / "blank.csv", [dict(WATER, HOMO_au="")])
    with pytest.raises(ValueError, match="blank.csv:2.*could not convert"):
        read_qm9(path=blank)


def test_first_molecules_of_the_real_package_data():
    ds = read_qm9(limit=10)
    assert len(ds) == 10
    assert [d.smiles for d in ds][:3] == ["C", "N", "O"]
    methane = ds[0]
    assert methane.z.tolist() == [6, 1, 1, 1, 1]
    assert methane[keys.U0].item() == pytest.approx(-40.47893 * units.HARTREE, rel=1e-6)
    assert methane[keys.QM9_ID].item() == 1
    # C-H bond lengths of methane, about 1.09 Å: positions are in Å
    bonds = torch.linalg.norm(methane.pos[1:] - methane.pos[0], dim=1)
    assert torch.allclose(bonds, torch.full((4,), 1.09, dtype=bonds.dtype), atol=0.01)


def test_streaming_is_fast_and_indices_cross_files():
    start = time.perf_counter()
    ds = read_qm9(limit=300)
    assert time.perf_counter() - start < 1.0
    assert len(ds) == 300
    far = read_qm9(indices=[43609, 43610], properties=[keys.U0])  # last of part 1, first of part 2
    assert far[1][keys.QM9_ID].item() == 44747
    assert np.isfinite(far[0][keys.U0].item())
