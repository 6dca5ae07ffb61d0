"""Sampling: start structures, GFN2-xTB optimisation, MD and displacements (water only, few steps)."""

import importlib.util

import numpy as np
import pytest
from ase import units

pytest.importorskip("tblite")
pytest.importorskip("rdkit")

from zoo.data.readers.ase_io import write_extxyz  # noqa: E402
from zoo.datagen import jobs, qm9, sampling, sampling_runs  # noqa: E402
from zoo.datagen.files import read_structures  # noqa: E402

SERIAL = jobs.Workers(0)  # in this process: the sampling logic without Dask


@pytest.fixture(scope="module")
def water_min():
    return sampling.xtb_optimize(sampling.from_smiles("O", seed=0), fmax=0.005)


def test_from_smiles_is_deterministic_and_records_charge():
    a, b = sampling.from_smiles("[NH4+]", seed=3), sampling.from_smiles("[NH4+]", seed=3)
    assert a.get_chemical_formula() == "H4N" and a.info["charge"] == 1
    np.testing.assert_array_equal(a.positions, b.positions)


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot parse the SMILES"):
        sampling.from_smiles("C1CC(")
    with pytest.raises(FileNotFoundError, match="no structure file"):
        read_structures(tmp_path / "missing.xyz")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("three\nnot an xyz file\n")
    with pytest.raises(ValueError, match="cannot read structures"):
        read_structures(garbage)
    with pytest.raises(ValueError, match="thermostat"):
        sampling.md_sample(sampling.from_smiles("O"), 1, thermostat="berendsen")


def test_xtb_optimize_reaches_fmax(water_min):
    assert np.abs(water_min.arrays["xtb_forces"]).max() < 0.005
    assert water_min.calc is None and water_min.info["xtb_energy"] < 0


def test_lowest_xtb_conformer_finds_the_hydrogen_bonded_malonaldehyde():
    # seed 0's single embedding relaxes to the open enol (O-O ~4 A); one of five conformers is the
    # hydrogen-bonded Z-enol of MD17, about 0.3 eV lower in GFN2-xTB
    smiles = "O/C=C\\C=O"
    single = sampling.xtb_optimize(sampling.from_smiles(smiles, seed=0))
    best = sampling.lowest_xtb_conformer(smiles, 5, seed=0)
    oxygens = [i for i, z in enumerate(best.numbers) if z == 8]
    assert best.info["xtb_energy"] <= single.info["xtb_energy"] + 1e-6
    assert best.get_distance(*oxygens) < 2.8
    assert 0 <= best.info["conformer"] < 5
    with pytest.raises(ValueError, match="at least 1"):
        sampling.lowest_xtb_conformer(smiles, 0)


@pytest.mark.parametrize("thermostat", ["langevin", "nvt"])
def test_md_sample_is_deterministic_with_xtb_results(water_min, thermostat):
    run = lambda: sampling.md_sample(water_min, n_frames=3, interval=2, equilibration_steps=2,
                                     thermostat=thermostat, seed=7)  # noqa: E731
    first, second = run(), run()
    assert [f.info["md_step"] for f in first] == [4, 6, 8]
    for a, b in zip(first, second):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-10)
        assert a.arrays["xtb_forces"].shape == (3, 3) and a.calc is None
    assert not np.allclose(first[0].positions, first[2].positions)
    # a fixed centre of mass: the sample is of internal motion only
    np.testing.assert_allclose(first[-1].get_center_of_mass(), water_min.get_center_of_mass(), atol=1e-8)


def test_normal_modes_of_water(water_min):
    eigenvalues, modes = sampling.normal_modes(water_min)
    factor = units._hbar * 1e10 / np.sqrt(units._e * units._amu)  # hbar*omega in eV per sqrt(eigenvalue)
    wavenumbers = np.sqrt(eigenvalues) * factor / units.invcm
    assert modes.shape == (9, 3)  # 3N-6 internal modes only
    np.testing.assert_allclose(modes.T @ modes, np.eye(3), atol=1e-10)
    assert 1400 < wavenumbers[0] < 1700 and 3400 < wavenumbers[1] < wavenumbers[2] < 3900


def test_normal_mode_displacements_have_boltzmann_variance(water_min):
    temperature = 300.0
    frames = sampling.displace(water_min, 400, mode="normal_modes", temperature_K=temperature, seed=1)
    eigenvalues, modes = sampling.normal_modes(water_min)
    steps = np.array([f.positions - water_min.positions for f in frames])
    mass_weighted = (steps * np.sqrt(water_min.get_masses())[None, :, None]).reshape(len(frames), -1)
    q = mass_weighted @ modes
    # classical equipartition: each normal coordinate has variance kT / omega^2 (±15% for 400 samples)
    np.testing.assert_allclose(q.var(0) * eigenvalues / (units.kB * temperature), 1.0, atol=0.15)
    again = sampling.displace(water_min, 400, mode="normal_modes", temperature_K=temperature, seed=1)
    np.testing.assert_allclose(again[5].positions, frames[5].positions, atol=1e-10)  # xTB threads: last bits


def test_random_displacements_and_atomic_write(tmp_path, water_min):
    frames = sampling.displace(water_min, 200, amplitude=0.02, seed=0)
    steps = np.array([f.positions - water_min.positions for f in frames])
    assert abs(steps.std() - 0.02) < 0.002
    path = write_extxyz(tmp_path / "out" / "water.extxyz", frames[:5])
    back = read_structures(path)
    assert len(back) == 5 and back[0].info["sampler"].startswith("random")
    assert [p.name for p in path.parent.iterdir()] == ["water.extxyz"]  # no temporary left behind


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_from_qm9_row_zero_is_methane():
    atoms = sampling.from_qm9(0)
    assert atoms.get_chemical_formula() == "CH4" and atoms.info["smiles"] == "C"


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_qm9_molecule_cheap_and_reference_frames_share_the_atom_order():
    from zoo.data.molgraph import mol_from_smiles, same_connectivity
    from zoo.data.readers.qm9 import read_qm9

    data = read_qm9(indices=[13], properties=[], dtype="float64")[0]  # ethanol
    cheap, reference = qm9.qm9_molecule(data, 13, seed=0)
    mol = mol_from_smiles(cheap.info["smiles"])
    assert cheap.numbers.tolist() == reference.numbers.tolist() == [a.GetAtomicNum() for a in mol.GetAtoms()]
    assert cheap.info["smiles"] == reference.info["smiles"]
    assert {k: cheap.info[k] for k in ("qm9_id", "qm9_row", "charge", "structure_kind")} == {
        "qm9_id": 14, "qm9_row": 13, "charge": 0, "structure_kind": sampling.XTB_OPTIMIZED}
    assert reference.info["structure_kind"] == sampling.QM9_REFERENCE and "xtb_energy" not in reference.info
    assert np.abs(cheap.arrays["xtb_forces"]).max() < 0.01 and cheap.info["sampler"] == qm9.qm9_sampler(0, 0.01)
    assert same_connectivity(cheap, cheap.info["smiles"]) and same_connectivity(reference, reference.info["smiles"])
    for i, j in [(0, 1), (1, 2)]:  # C-C and C-O: xTB and B3LYP agree to a few hundredths of an Å
        assert abs(cheap.get_distance(i, j) - reference.get_distance(i, j)) < 0.04


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_a_cheap_structure_started_from_qm9s_geometry_keeps_its_conformer():
    from zoo.data.readers.qm9 import read_qm9
    from zoo.metrics import best_rmsd

    row = 59  # butan-2-ol-like chains have several conformers; any molecule works for the claim
    data = read_qm9(indices=[row], properties=[], dtype="float64")[0]
    cheap, reference = qm9.qm9_molecule(data, row, start="qm9")
    assert cheap.info["sampler"] == qm9.qm9_sampler(0, 0.01, "qm9") != qm9.qm9_sampler(0, 0.01)
    assert np.abs(cheap.arrays["xtb_forces"]).max() < 0.01
    # the same conformer: only the method's own bond lengths and angles differ
    assert best_rmsd(cheap, reference, cheap.info["smiles"]) < 0.1
    with pytest.raises(ValueError, match="start must be one of"):
        qm9.qm9_molecule(data, row, start="smiles")


def test_qm9_molecule_rejects_charged_and_mismatched_molecules():
    from zoo.data import AtomicData

    ammonium = AtomicData.from_arrays([7, 1, 1, 1, 1], np.eye(5, 3), qm9_id=0)
    ammonium["smiles"] = "[NH4+]"
    with pytest.raises(ValueError, match=r"net charge \+1"):
        qm9.qm9_molecule(ammonium, 0)
    ethanol = AtomicData.from_ase(sampling.from_smiles("CCO"), {"qm9_id": np.array([14])})
    ethanol["smiles"] = "COC"  # same formula, other bonds
    with pytest.raises(ValueError, match="QM9 geometry: the bonds .* do not match the SMILES 'COC'"):
        qm9.qm9_molecule(ethanol, 13)


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_sample_qm9_resumes_filters_and_records_failures(tmp_path):
    import json

    out, reference = tmp_path / "xtb.extxyz", tmp_path / "reference.extxyz"
    run = lambda rows, **kw: sampling_runs.sample_qm9(rows, out, reference, progress=False, workers=SERIAL, **kw)  # noqa: E731
    first = run([0], steps=0)  # methane cannot reach fmax in 0 optimiser steps
    assert (first["done"], first["failed"]) == (0, 1) and not out.exists() and not reference.exists()
    failure = json.loads(first["failures"].read_text())
    assert failure["qm9_row"] == 0 and failure["smiles"] == "C" and "did not reach fmax" in failure["reason"]

    second = run([0, 1, 2, 3], max_heavy_atoms=1)  # row 0 failed before, row 3 (C#C) has 2 heavy atoms
    assert {k: second[k] for k in ("done", "failed", "filtered", "skipped")} == {
        "done": 2, "failed": 0, "filtered": 1, "skipped": 1}
    assert run([0, 1, 2], retry_failures=True)["done"] == 1
    frames, references = read_structures(out), read_structures(reference)
    assert [f.info["qm9_row"] for f in frames] == [f.info["qm9_row"] for f in references] == [1, 2, 0]
    assert [f.info["structure_kind"] for f in references] == [sampling.QM9_REFERENCE] * 3
    with pytest.raises(ValueError, match="made with other settings"):
        run([3], seed=1)


def test_sample_qm9_reference_only_filters_by_size_and_resumes(tmp_path):
    reference = tmp_path / "reference.extxyz"
    run = lambda rows, **kw: sampling_runs.sample_qm9(rows, None, reference, progress=False, workers=SERIAL,  # noqa: E731
                                                 **kw)
    first = run([0, 1, 2, 3, 4], min_heavy_atoms=2)  # rows 0-2 (CH4, NH3, H2O) have one heavy atom
    assert (first["done"], first["filtered"]) == (2, 3)
    frames = read_structures(reference)
    assert [f.info["qm9_row"] for f in frames] == [3, 4]
    assert all(f.info["structure_kind"] == sampling.QM9_REFERENCE and "xtb_energy" not in f.info for f in frames)
    assert run([3, 4, 5], min_heavy_atoms=2)["skipped"] == 2


def test_sample_qm9_leaves_out_molecules_by_smiles(tmp_path):
    reference = tmp_path / "reference.extxyz"
    summary = sampling_runs.sample_qm9([0, 1, 2, 3], None, reference, exclude_smiles=["[H]O[H]", "C#C"],
                                       progress=False, workers=SERIAL)
    assert (summary["done"], summary["filtered"]) == (2, 2)
    assert [f.info["qm9_row"] for f in read_structures(reference)] == [0, 1]  # methane and ammonia
    with pytest.raises(ValueError, match="cannot parse the SMILES 'C1C'"):
        sampling_runs.sample_qm9([4], None, reference, exclude_smiles=["C1C"], progress=False, workers=SERIAL)


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_sample_qm9_writes_in_row_order_whatever_order_the_workers_finish_in(tmp_path, monkeypatch):
    # positions in these files are the source_index of labels made from them: they must not depend
    # on which worker finished first
    serial_run = jobs.run

    def last_first(function, tasks, workers, name):
        yield from reversed(list(serial_run(function, tasks, jobs.Workers(0), name)))

    monkeypatch.setattr(jobs, "run", last_first)
    reference = tmp_path / "reference.extxyz"
    summary = sampling_runs.sample_qm9([4, 2, 3, 0], None, reference, progress=False)
    assert summary["done"] == 4
    assert [f.info["qm9_row"] for f in read_structures(reference)] == [4, 2, 3, 0]
