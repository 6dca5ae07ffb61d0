"""Sampling: start structures, GFN2-xTB optimisation, MD and displacements (water only, few steps)."""

import importlib.util

import numpy as np
import pytest
from ase import units

pytest.importorskip("tblite")
pytest.importorskip("rdkit")

from zoo.qc import sampling  # noqa: E402


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
        sampling.read_structures(tmp_path / "missing.xyz")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("three\nnot an xyz file\n")
    with pytest.raises(ValueError, match="cannot read structures"):
        sampling.read_structures(garbage)
    with pytest.raises(ValueError, match="thermostat"):
        sampling.md_sample(sampling.from_smiles("O"), 1, thermostat="berendsen")


def test_xtb_optimize_reaches_fmax(water_min):
    assert np.abs(water_min.arrays["xtb_forces"]).max() < 0.005
    assert water_min.calc is None and water_min.info["xtb_energy"] < 0


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
    path = sampling.write_extxyz(tmp_path / "out" / "water.extxyz", frames[:5])
    back = sampling.read_structures(path)
    assert len(back) == 5 and back[0].info["sampler"].startswith("random")
    assert [p.name for p in path.parent.iterdir()] == ["water.extxyz"]  # no temporary left behind


@pytest.mark.skipif(importlib.util.find_spec("qm9pack") is None, reason="qm9pack not installed")
def test_from_qm9_row_zero_is_methane():
    atoms = sampling.from_qm9(0)
    assert atoms.get_chemical_formula() == "CH4" and atoms.info["smiles"] == "C"
