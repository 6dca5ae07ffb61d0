import pytest

from zoo.data import units


def test_constants_match_the_design_values():
    assert units.HARTREE == pytest.approx(27.211386, abs=1e-6)
    assert units.KCAL_MOL == pytest.approx(0.0433641, abs=1e-7)
    assert units.BOHR == pytest.approx(0.529177, abs=1e-6)
    assert units.DEBYE == pytest.approx(0.2081943, abs=1e-7)


def test_unit_names_and_unknown_units():
    assert units.energy_to_ev("kcal/mol") == units.KCAL_MOL
    assert units.energy_to_ev("eV") == 1.0
    assert units.energy_to_ev("Hartree") == units.HARTREE
    assert units.length_to_angstrom("bohr") == units.BOHR
    with pytest.raises(ValueError, match="unknown energy unit 'kcal'.*kcal/mol"):
        units.energy_to_ev("kcal")
