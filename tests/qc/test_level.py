"""LevelOfTheory: round trips, PySCF objects it builds, and clear errors for bad structures."""

import pytest

from zoo.qc.level import LevelOfTheory, pyscf_version

WATER_Z = [8, 1, 1]
WATER_POS = [[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]]


def test_defaults_are_qh9_level_and_round_trip():
    level = LevelOfTheory()
    assert (level.method, level.xc, level.basis, level.grid_level, level.code) == ("rks", "b3lyp5", "def2-svp", 3,
                                                                                     "pyscf")
    assert level.describe() == "RKS b3lyp5/def2-svp grid 3"
    assert LevelOfTheory.from_dict(level.as_dict()) == level
    hf = LevelOfTheory(method="RHF", xc=None, basis="STO-3G", grid_level=5)
    assert hf.describe() == "RHF/sto-3g" and hf.grid_level is None  # Hartree-Fock has no XC grid
    assert pyscf_version().count(".") >= 1


def test_records_written_before_a_field_existed_read_with_its_default():
    """Failure logs of zoo 0.1 hold levels without `code`, and a Hartree-Fock level with grid 3."""
    recorded = {"method": "rhf", "xc": None, "basis": "sto-3g", "grid_level": 3, "density_fitting": False,
                "charge": 0, "spin": 0}
    assert LevelOfTheory.from_dict(recorded) == LevelOfTheory(method="rhf", xc=None, basis="sto-3g")


def test_a_level_of_another_code_describes_data_and_builds_no_scf():
    orca = LevelOfTheory(xc="PBE", basis="def2-svp", grid_level=None, code="ORCA")
    assert orca.describe() == "RKS pbe/def2-svp (orca)" and orca != LevelOfTheory(xc="pbe", basis="def2-svp")
    mol = orca.build_mole(WATER_Z, WATER_POS)  # the basis is the same in every code
    with pytest.raises(ValueError, match="level of orca, whose grids and defaults PySCF does not reproduce"):
        orca.build_scf(mol)
    with pytest.raises(ValueError, match="PySCF DFT calculation needs a grid_level"):
        LevelOfTheory(xc="pbe", grid_level=None)


def test_build_scf_matches_settings():
    level = LevelOfTheory(xc="lda,vwn", basis="sto-3g", grid_level=1, density_fitting=True)
    mol = level.build_mole(WATER_Z, WATER_POS)
    assert mol.nao == 7 and mol.nelectron == 10 and not mol.cart
    mf = level.build_scf(mol)
    assert mf.xc == "lda,vwn" and mf.grids.level == 1 and hasattr(mf, "with_df")
    rhf = LevelOfTheory(method="rhf", xc=None, basis="sto-3g").build_scf(mol)
    assert type(rhf).__name__ == "RHF"


@pytest.mark.parametrize(
    "z, pos, message",
    [
        ([54, 1], [[0, 0, 0], [0, 0, 1.6]], "no functions for element Xe; 'def2-svp' has it"),
        ([8, 1], [[0, 0, 0], [0, 0, 0.97]], "set spin=1 and use an open-shell method"),
        ([8, 1, 1], [[0, 0, 0], [0.0, 0.0, 0.05], [1, 0, 0]], "atoms 0 (O) and 1 (H)"),
    ],
)
def test_build_mole_rejects_bad_input(z, pos, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LevelOfTheory(basis="6-31g").build_mole(z, pos)


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="rhf' takes no xc"):
        LevelOfTheory(method="rhf")
    with pytest.raises(ValueError, match="open-shell"):
        LevelOfTheory(spin=1)
    with pytest.raises(ValueError, match="unknown level-of-theory fields"):
        LevelOfTheory.from_dict({"xc": "pbe", "functional": "pbe"})
    with pytest.raises(ValueError, match="grid_level must be an integer"):
        LevelOfTheory(grid_level=True)
    with pytest.raises(ValueError, match="basis must be a non-empty string"):
        LevelOfTheory(basis="")
