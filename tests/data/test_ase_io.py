import ase.db
import ase.io
import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from zoo.data import keys
from zoo.data.readers import read_ase


def _labelled(name, energy, seed=0):
    rng = np.random.default_rng(seed)
    atoms = molecule(name)
    forces = rng.normal(size=(len(atoms), 3))
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces, dipole=np.array([0.0, 0.1, 0.2]))
    atoms.info["REF_energy"] = energy - 1.0
    atoms.info["config_type"] = "md"
    atoms.arrays["charges"] = rng.normal(size=len(atoms))
    return atoms


def test_extxyz_calculator_results_info_and_arrays(tmp_path):
    images = [_labelled("H2O", -14.2, 0), _labelled("CH4", -24.1, 1)]
    path = tmp_path / "train.extxyz"
    ase.io.write(path, images, format="extxyz")
    ds = read_ase(path, info_keys={"REF_energy": "ref_energy", "config_type": "config_type"},
                  array_keys={"charges": "charges"})
    assert len(ds) == 2
    water = ds[0]
    assert water[keys.ENERGY].item() == pytest.approx(-14.2)
    assert np.allclose(water[keys.FORCES].numpy(), images[0].get_forces(), atol=1e-6)
    assert water[keys.DIPOLE].shape == (1, 3)
    assert water["ref_energy"].tolist() == pytest.approx([-15.2])
    assert water["charges"].shape == (3,)
    assert water.config_type == "md"
    # a named value overrides the calculator's
    renamed = read_ase(path, info_keys={"REF_energy": keys.ENERGY})
    assert renamed[1][keys.ENERGY].item() == pytest.approx(-25.1)
    assert [d.z.numel() for d in read_ase(path, indices=[1])] == [5]


def test_periodic_stress_is_a_full_matrix(tmp_path):
    atoms = bulk("Si", "diamond", 5.43)
    voigt = np.array([1.0, 2.0, 3.0, 0.4, 0.5, 0.6])
    atoms.calc = SinglePointCalculator(atoms, energy=-10.0, forces=np.zeros((2, 3)), stress=voigt)
    path = tmp_path / "si.xyz"
    ase.io.write(path, atoms, format="extxyz")
    data = read_ase(path)[0]
    assert data.is_periodic
    assert data[keys.STRESS].shape == (1, 3, 3)
    assert data[keys.STRESS][0, 1, 2].item() == pytest.approx(0.4)
    assert data[keys.STRESS][0, 0, 1].item() == pytest.approx(0.6)


def test_ase_database_with_key_value_pairs(tmp_path):
    path = tmp_path / "set.db"
    with ase.db.connect(path) as database:
        for i, name in enumerate(["H2O", "NH3"]):
            database.write(_labelled(name, -10.0 - i, i), key_value_pairs={"homo": -0.3 - i})
    ds = read_ase(path, info_keys={"homo": keys.HOMO})
    assert [d[keys.ENERGY].item() for d in ds] == pytest.approx([-10.0, -11.0])
    assert ds[1][keys.HOMO].tolist() == pytest.approx([-1.3])
    assert ds[1][keys.FORCES].shape == (4, 3)


def test_missing_and_inconsistent_properties_are_errors(tmp_path):
    path = tmp_path / "mixed.extxyz"
    unlabelled = molecule("H2O")
    ase.io.write(path, [_labelled("H2O", -1.0), unlabelled], format="extxyz")
    with pytest.raises(ValueError, match="structure 1 has different properties.*missing"):
        read_ase(path)
    with pytest.raises(ValueError, match="structure 1 has no info value 'REF_energy'"):
        read_ase(path, info_keys=["REF_energy"])


def test_unreadable_file_names_the_file_and_the_formats(tmp_path):
    path = tmp_path / "garbage.xyz"
    path.write_text("this is not\nan xyz file\n")
    with pytest.raises(ValueError, match=r"cannot read .*garbage.xyz.*extended XYZ.*\.db"):
        read_ase(path)
    with pytest.raises(FileNotFoundError, match="no structure file"):
        read_ase(tmp_path / "absent.xyz")


def test_partly_labelled_files_with_masks_and_molecular_graphs(tmp_path):
    frames = []
    for i in range(3):
        atoms = molecule("CH3OH")  # C, O, then the hydrogens: the atom order of the SMILES "CO"
        atoms.info.update(smiles="CO", structure_kind="perturbed" if i else "xtb_optimized")
        if i:
            atoms.calc = SinglePointCalculator(atoms, energy=-float(i), forces=np.full((6, 3), 0.1 * i))
        frames.append(atoms)
    path = tmp_path / "partly.extxyz"
    ase.io.write(path, frames)
    with pytest.raises(ValueError, match="different properties"):
        read_ase(path)
    data = read_ase(path, mask_missing=True, molecular_graph=True, info_keys=["structure_kind"])
    assert [bool(d[keys.HAS_ENERGY]) for d in data] == [False, True, True]
    assert [bool(d[keys.HAS_FORCES]) for d in data] == [False, True, True]
    assert data[0][keys.ENERGY].item() == 0 and data[0][keys.FORCES].shape == (6, 3)
    assert data[2][keys.ENERGY].item() == -2 and data[1].structure_kind == "perturbed"
    assert data[0][keys.SMILES] == "CO" and data[0][keys.BOND_INDEX].shape == (2, 10)
    assert keys.STRESS not in data[0]  # only the results found in the file, unless named
    named = read_ase(path, mask_missing=True, results=["energy", "forces", "dipole"])
    assert not any(bool(d[keys.HAS_DIPOLE]) for d in named) and named[0][keys.DIPOLE].shape == (1, 3)
    for atoms in frames:
        atoms.info["smiles"] = "OC"  # O first: not the frame's order
    ase.io.write(path, frames)
    with pytest.raises(ValueError, match="structure 0.*in this order"):
        read_ase(path, molecular_graph=True, mask_missing=True)


def test_write_extxyz_keeps_backslashes_in_info_and_the_callers_frames(tmp_path):
    from zoo.data.readers.ase_io import write_extxyz

    atoms = molecule("H2O")
    atoms.info["smiles"] = "O/C=C\\C=O"
    write_extxyz(tmp_path / "frames.extxyz", [atoms])
    write_extxyz(tmp_path / "frames.extxyz", [atoms], append=True)
    assert [a.info["smiles"] for a in ase.io.read(tmp_path / "frames.extxyz", ":")] == ["O/C=C\\C=O"] * 2
    assert atoms.info["smiles"] == "O/C=C\\C=O"


def test_indices_as_a_slice_string(tmp_path):
    images = [_labelled(name, -1.0 - i, i) for i, name in enumerate(["H2O", "CH4", "NH3", "H2"])]
    path = tmp_path / "frames.extxyz"
    ase.io.write(path, images, format="extxyz")
    assert [d.z.numel() for d in read_ase(path, indices="1:3")] == [5, 4]
    assert [d.z.numel() for d in read_ase(path, indices="::2")] == [3, 4]
    with pytest.raises(ValueError, match="is not a slice"):
        read_ase(path, indices="1-3")
