"""Multi-fidelity force fields: one backbone, an energy head per level of theory, data tagged by level."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator
from torch_geometric.data import Batch

from zoo.data import AtomicDataModule, keys
from zoo.data.readers.ase_io import write_extxyz
from zoo.models import EquivariantBackbone, ForceFieldModel

SMALL = {"elements": ["H", "C", "O"], "channels": 8, "l_max": 1, "num_layers": 1, "cutoff": 4.0, "radial_hidden": 8}
LEVELS = ["pbe/def2-svp", "gfn2-xtb"]
# per-element energies of the two levels, eV: far apart, as DFT and xTB total energies are
REFERENCES = {"pbe/def2-svp": {1: -13.0, 6: -1030.0, 8: -2040.0}, "gfn2-xtb": {1: -10.0, 6: -48.0, 8: -120.0}}
XTB_READER = {"info_keys": {"xtb_energy": "energy"}, "array_keys": {"xtb_forces": "forces"}, "results": []}


def _frames(n: int = 24) -> list:
    """Molecules of varied composition labelled at both levels: E = sum of the level's references + noise."""
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        atoms = molecule(["CH3CH2OH", "CH4", "H2O", "CH3OH", "CO2"][i % 5])
        atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
        energy = {level: sum(REFERENCES[level][z] for z in atoms.numbers) + 0.01 * rng.standard_normal()
                  for level in LEVELS}
        atoms.info["xtb_energy"] = energy["gfn2-xtb"]
        atoms.arrays["xtb_forces"] = rng.standard_normal((len(atoms), 3))
        atoms.calc = SinglePointCalculator(atoms, energy=energy["pbe/def2-svp"],
                                           forces=rng.standard_normal((len(atoms), 3)))
        frames.append(atoms)
    return frames


@pytest.fixture
def labelled(tmp_path):
    path = tmp_path / "labelled.extxyz"
    write_extxyz(path, _frames())
    return path


def _module(path, **kwargs) -> AtomicDataModule:
    sources = [{"source": str(path), "level": "pbe/def2-svp"},
               {"source": str(path), "level": "gfn2-xtb", "reader_kwargs": XTB_READER}]
    return AtomicDataModule(source=sources, levels=LEVELS, cutoff=4.0, targets=["energy", "forces"],
                            standardize=["energy", "forces"], reference_energies=["energy"], dtype="float64",
                            split={"method": "random", "fractions": [0.75, 0.25], "seed": 0}, batch_size=4,
                            **kwargs)


def test_the_data_module_tags_each_source_with_its_level_and_fits_references_per_level(labelled):
    module = _module(labelled)
    module.setup("fit")
    structures = module.train_dataset.raw + module.val_dataset.raw
    assert len(structures) == 48 and {int(s[keys.FIDELITY]) for s in structures} == {0, 1}
    xtb = [s for s in structures if int(s[keys.FIDELITY]) == 1]
    assert all(abs(float(s[keys.ENERGY])) < 400 for s in xtb)  # xTB energies read from xtb_energy
    for level in LEVELS:
        fitted = module.statistics.reference_energies("energy", level)
        assert fitted == pytest.approx(REFERENCES[level], abs=0.05)
    assert module.statistics.reference_energies("energy") == module.statistics.reference_energies("energy", LEVELS[0])
    # the standardisation is of what the references leave: noise, not the levels' offset
    assert module.statistics.std("energy") < 0.05


def test_multi_fidelity_sources_are_checked(labelled):
    with pytest.raises(ValueError, match="with levels, source must be a list"):
        AtomicDataModule(source=str(labelled), levels=LEVELS)
    with pytest.raises(ValueError, match="give levels too"):
        AtomicDataModule(source=[{"source": str(labelled), "level": "pbe/def2-svp"}])
    with pytest.raises(ValueError, match="'ccsd' which is not one of levels|level 'ccsd', which is not one of"):
        AtomicDataModule(source=[{"source": str(labelled), "level": "ccsd"}], levels=LEVELS)
    with pytest.raises(ValueError, match=r"\{source, level, reader_kwargs\}"):
        AtomicDataModule(source=[{"path": str(labelled), "level": "gfn2-xtb"}], levels=LEVELS)
    module = AtomicDataModule(source=[{"source": str(labelled), "level": "gfn2-xtb", "reader_kwargs": XTB_READER}],
                              levels=LEVELS, reference_energies=["energy"], split={"method": "random",
                                                                                   "fractions": [0.75, 0.25]})
    with pytest.raises(ValueError, match="no structure at level 'pbe/def2-svp'"):
        module.setup("fit")


def test_a_test_source_is_tagged_with_its_test_level(labelled):
    """The test set's labels are at the primary level unless ``test_level`` names another: then its
    structures carry that level, and a model tests them with that level's head."""
    primary = _module(labelled, test_source=str(labelled))
    primary.setup("fit")
    assert all(keys.FIDELITY not in s for s in primary.test_dataset.raw)  # the model's own level
    xtb = _module(labelled, test_source=str(labelled), test_level="gfn2-xtb", test_reader_kwargs=XTB_READER)
    xtb.setup("fit")
    assert {int(s[keys.FIDELITY]) for s in xtb.test_dataset.raw} == {1}
    assert all(abs(float(s[keys.ENERGY])) < 400 for s in xtb.test_dataset.raw)  # the xTB energies
    with pytest.raises(ValueError, match="test_level 'ccsd' is not one of levels"):
        _module(labelled, test_source=str(labelled), test_level="ccsd")
    with pytest.raises(ValueError, match=r"not one of levels \(none: one level\)"):
        AtomicDataModule(source=str(labelled), test_source=str(labelled), test_level="gfn2-xtb")


def test_each_structure_gets_the_energy_of_its_level_and_forces_are_its_gradient(labelled):
    module = _module(labelled)
    module.setup("fit")
    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(**SMALL), hidden=8, levels=LEVELS).double()
    model.set_statistics(module.statistics)
    dft, xtb = (next(s for s in module.train_dataset if int(s[keys.FIDELITY]) == f) for f in (0, 1))
    batch = Batch.from_data_list([dft, xtb])
    with torch.no_grad():  # forces all the same (autograd inside), no graph kept
        out = model(batch)
    for structure, level, energy in zip((dft, xtb), LEVELS, out[keys.ENERGY]):
        reference = sum(REFERENCES[level][int(z)] for z in structure[keys.ATOMIC_NUMBERS])
        assert float(energy) == pytest.approx(reference, abs=5.0)  # an untrained head is near its references
        # a structure without a level is predicted at model.level, the same head
        model.level = level
        alone = structure.clone()
        del alone[keys.FIDELITY]
        assert float(model(Batch.from_data_list([alone]))[keys.ENERGY]) == pytest.approx(float(energy), abs=1e-9)
    # forces of the xTB structure: minus the gradient of its xTB energy, by finite differences
    model.level = "gfn2-xtb"
    alone = xtb.clone()
    del alone[keys.FIDELITY]
    forces = model(Batch.from_data_list([alone]))[keys.FORCES]
    assert torch.allclose(out[keys.FORCES][int(dft[keys.ATOMIC_NUMBERS].numel()):], forces, atol=1e-10)
    h, moved = 1e-5, []
    for sign in (1, -1):
        shifted = alone.clone()
        shifted[keys.POSITIONS][0, 2] += sign * h
        moved.append(float(model(Batch.from_data_list([shifted]))[keys.ENERGY]))
    assert float(forces[0, 2]) == pytest.approx(-(moved[0] - moved[1]) / (2 * h), abs=1e-6)
    with pytest.raises(ValueError, match="not 'ccsd'"):
        model.level = "ccsd"
    assert ForceFieldModel(EquivariantBackbone(**SMALL)).level is None
