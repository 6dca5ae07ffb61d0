import numpy as np
import pytest

from zoo.data import keys, units
from zoo.data.readers import read_md17

Z = np.array([6, 1, 1, 1, 1])


def _frames(n=4, seed=0):
    rng = np.random.default_rng(seed)
    coords = rng.normal(size=(n, 5, 3))
    energies = rng.normal(size=n) - 25000.0  # kcal/mol, like MD17
    forces = rng.normal(size=(n, 5, 3)) * 30.0  # kcal/mol/Å
    return coords, energies, forces


def test_rmd17_layout_is_converted_to_ev(tmp_path):
    coords, energies, forces = _frames()
    path = tmp_path / "rmd17_methane.npz"
    np.savez(path, nuclear_charges=Z, coords=coords, energies=energies, forces=forces,
             old_indices=np.arange(4), old_energies=energies)
    ds = read_md17(path)
    assert len(ds) == 4 and ds.metadata["format"] == "rmd17"
    assert ds[2].z.tolist() == Z.tolist()
    assert np.allclose(ds[2].pos.numpy(), coords[2], atol=1e-6)
    assert ds[2][keys.ENERGY].item() == pytest.approx(energies[2] * units.KCAL_MOL, rel=1e-6)
    assert np.allclose(ds[2][keys.FORCES].numpy(), forces[2] * 0.0433641, rtol=1e-5)
    assert ds[2][keys.ENERGY].shape == (1,)


def test_md17_layout_indices_and_units(tmp_path):
    coords, energies, forces = _frames()
    path = tmp_path / "md17_methane.npz"
    np.savez(path, z=Z, R=coords, E=energies[:, None], F=forces, name=np.array("methane"))
    ds = read_md17(path, indices=[3, 0])
    assert ds.metadata["format"] == "md17"
    assert ds[0][keys.ENERGY].item() == pytest.approx(energies[3] * units.KCAL_MOL, rel=1e-6)
    in_ev = read_md17(path, indices=[3], units="eV")
    assert in_ev[0][keys.ENERGY].item() == pytest.approx(energies[3], rel=1e-6)
    with pytest.raises(IndexError, match="out of range for 4 structures"):
        read_md17(path, indices=[4])
    with pytest.raises(ValueError, match="unknown energy unit"):
        read_md17(path, units="kcal")


def test_wrong_keys_name_both_layouts_and_what_was_found(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, numbers=Z, positions=np.zeros((1, 5, 3)))
    with pytest.raises(ValueError) as error:
        read_md17(path)
    message = str(error.value)
    for name in ("nuclear_charges", "coords", "energies", "forces", "'z'", "'R'", "'E'", "'F'", "numbers", "positions"):
        assert name in message


def test_inconsistent_shapes_and_nan(tmp_path):
    coords, energies, forces = _frames()
    path = tmp_path / "bad.npz"
    np.savez(path, z=Z, R=coords, E=energies[:3], F=forces)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        read_md17(path)
    energies[1] = np.nan
    np.savez(path, z=Z, R=coords, E=energies, F=forces)
    with pytest.raises(ValueError, match=r"bad.npz: frame 1: energy holds 1 NaN"):
        read_md17(path)
