import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from zoo.data import AtomicDataModule, Statistics, keys
from zoo.data.splits import load_split

RECIPE = """
source: qm9
reader_kwargs: {limit: 60}
cutoff: 3.0
targets: [U0]
standardize: [U0, gap]
reference_energies: [U0]
split: {method: random, sizes: [40, 10, 10], seed: 0}
batch_size: 8
"""


def test_setup_splits_saves_the_split_and_fits_statistics(tmp_path):
    dm = AtomicDataModule(**yaml.safe_load(RECIPE), split_dir=str(tmp_path))
    dm.setup("fit")
    assert dm.split.sizes == {"train": 40, "val": 10, "test": 10}
    assert dm.split_path == tmp_path / "split.npz" and dm.split_path.is_file()
    batch = next(iter(dm.train_dataloader()))
    assert batch.num_graphs == 8 and keys.EDGE_INDEX in batch and batch[keys.U0].shape == (8,)

    stats = dm.statistics
    assert isinstance(stats, Statistics)
    refs = stats.reference_energies(keys.U0)
    assert set(refs) == {1, 6, 7, 8} and stats[keys.U0]["reference_energies"] == refs
    assert stats.per_atom(keys.U0) and not stats.per_atom(keys.GAP)
    # the data keep physical values; U0 minus the fitted references is a few eV, not ~10 keV
    batches = list(dm.train_dataloader())
    totals = torch.cat([b[keys.U0] for b in batches])
    assert totals.abs().min() > 1000.0
    fitted = torch.cat([torch.tensor([sum(refs[int(z)] for z in b.z[b.batch == i])
                                      for i in range(b.num_graphs)]) for b in batches])
    assert (totals - fitted.to(totals)).abs().max() < 5.0
    assert abs(stats[keys.U0]["mean"]) < 1.0
    gaps = np.array([d[keys.GAP].item() for d in dm.train_dataset])
    assert stats.mean(keys.GAP) == pytest.approx(gaps.mean(), rel=1e-5)  # training set only
    assert stats.std(keys.GAP) == pytest.approx(gaps.std(), rel=1e-4) and stats.std(keys.MU) is None

    again = AtomicDataModule(**yaml.safe_load(RECIPE), split_file=str(dm.split_path))
    again.setup("fit")
    assert np.array_equal(again.split.test, dm.split.test)
    assert again.statistics[keys.U0]["mean"] == pytest.approx(stats[keys.U0]["mean"])
    assert load_split(dm.split_path).params["made_by"] == "random"


def test_split_is_saved_in_the_trainers_log_dir(tmp_path):
    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import CSVLogger

    trainer = Trainer(logger=CSVLogger(tmp_path, name="run"), default_root_dir=tmp_path,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    dm = AtomicDataModule("qm9", reader_kwargs={"limit": 20}, split={"method": "random", "sizes": [10, 5, 5]})
    dm.trainer = trainer
    dm.setup("fit")
    assert dm.split_path == tmp_path / "run" / "version_0" / "split.npz"
    assert dm.split_path.is_file()


def test_lightning_cli_style_construction():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(AtomicDataModule, "data")
    config = parser.parse_object({"data": yaml.safe_load(RECIPE)})
    dm = parser.instantiate_classes(config).data
    assert isinstance(dm, AtomicDataModule) and dm.split_spec["sizes"] == [40, 10, 10]


def test_missing_targets_and_empty_data_are_errors(tmp_path):
    dm = AtomicDataModule("qm9", reader_kwargs={"limit": 5}, targets=[keys.ENERGY, keys.FORCES],
                          split={"method": "random", "sizes": [3, 1, 1]})
    with pytest.raises(ValueError, match=r"has no \['energy', 'forces'\].*available keys: .*'U0'"):
        dm.setup("fit")
    empty = AtomicDataModule("qm9", reader_kwargs={"indices": []})
    with pytest.raises(ValueError, match="dataset is empty: 'qm9'"):
        empty.setup("fit")
    with pytest.raises(ValueError, match="leaves the val set empty"):
        AtomicDataModule("qm9", reader_kwargs={"limit": 5}, split={"method": "random", "fractions": [0.9, 0.1, 0]}
                         ).setup("fit")
    with pytest.raises(RuntimeError, match="call setup"):
        AtomicDataModule("qm9").train_dataloader()
    with pytest.raises(ValueError, match="standardize modes"):
        AtomicDataModule("qm9", standardize={keys.U0: "per_molecule"})


def test_file_source_with_size_split_and_float64(tmp_path):
    rng = np.random.default_rng(0)
    images = []
    for name in ["H2O", "NH3", "CH4", "C2H6", "CH3CH2OH", "C6H6"] * 3:
        atoms = molecule(name)
        atoms.positions += rng.normal(scale=0.01, size=atoms.positions.shape)
        atoms.calc = SinglePointCalculator(atoms, energy=-len(atoms) * 3.0, forces=rng.normal(size=(len(atoms), 3)))
        images.append(atoms)
    path = tmp_path / "set.extxyz"
    ase.io.write(path, images, format="extxyz")
    dm = AtomicDataModule(str(path), targets=[keys.ENERGY, keys.FORCES], standardize=[keys.FORCES], dtype="float64",
                          split={"method": "size", "max_train_atoms": 8, "min_test_atoms": 9, "val_fraction": 0.25},
                          batch_size=4)
    dm.setup()
    assert dm.split.sizes == {"train": 9, "val": 3, "test": 6}
    assert dm.train_dataset.n_atoms().max() <= 8 and dm.test_dataset.n_atoms().min() >= 9
    batch = next(iter(dm.test_dataloader()))
    assert batch.pos.dtype == torch.float64
    assert dm.split_path is None  # no trainer and no split_dir: nowhere to save


def test_test_set_from_a_separate_source(tmp_path):
    """An independent trajectory as the test set; the split divides the source into train/val."""
    def write(path, n, seed):
        rng = np.random.default_rng(seed)
        images = []
        for _ in range(n):
            atoms = molecule("H2O")
            atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
            atoms.calc = SinglePointCalculator(atoms, energy=rng.normal(), forces=rng.normal(size=(3, 3)))
            images.append(atoms)
        ase.io.write(path, images, format="extxyz")

    write(tmp_path / "train.extxyz", 10, 0)
    write(tmp_path / "test.extxyz", 4, 1)
    args = dict(targets=[keys.ENERGY, keys.FORCES], cutoff=3.0, test_source=str(tmp_path / "test.extxyz"))
    dm = AtomicDataModule(str(tmp_path / "train.extxyz"), split={"method": "random", "sizes": [8, 2]}, **args)
    dm.setup()
    assert len(dm.train_dataset) == 8 and len(dm.val_dataset) == 2 and len(dm.test_dataset) == 4
    test_energies = torch.cat([b.energy for b in dm.test_dataloader()])
    expected = [a.get_potential_energy() for a in ase.io.read(tmp_path / "test.extxyz", ":")]
    assert torch.allclose(test_energies, torch.tensor(expected, dtype=test_energies.dtype))
    assert keys.EDGE_INDEX in next(iter(dm.test_dataloader()))
    clash = AtomicDataModule(str(tmp_path / "train.extxyz"), split={"method": "random", "sizes": [6, 2, 2]}, **args)
    with pytest.raises(ValueError, match="give the split two sizes"):
        clash.setup()


def test_unlabelled_source_joins_the_training_loader(tmp_path):
    """Labelled and unlabelled structures in one run (mixed-mode self-consistency training)."""
    from lightning.pytorch.utilities import CombinedLoader

    rng = np.random.default_rng(0)
    labelled = []
    for _ in range(6):
        atoms = molecule("H2O")
        atoms.calc = SinglePointCalculator(atoms, energy=rng.normal())
        labelled.append(atoms)
    ase.io.write(tmp_path / "labelled.extxyz", labelled, format="extxyz")
    ase.io.write(tmp_path / "unlabelled.extxyz", [molecule("CH3OH")] * 5, format="extxyz")
    dm = AtomicDataModule(str(tmp_path / "labelled.extxyz"), targets=[keys.ENERGY], cutoff=3.0, batch_size=2,
                          split={"method": "random", "sizes": [4, 2, 0]},
                          unlabelled_source=str(tmp_path / "unlabelled.extxyz"))
    dm.setup()
    loaders = dm.train_dataloader()
    assert set(loaders) == {"labelled", "unlabelled"}
    batches = list(CombinedLoader(loaders, mode="max_size_cycle"))
    assert len(batches) == 3  # the longer loader (5 unlabelled, batch 2) sets the epoch
    batch = batches[0][0]
    assert keys.ENERGY in batch["labelled"] and keys.ENERGY not in batch["unlabelled"]
    assert keys.EDGE_INDEX in batch["unlabelled"] and int(batch["unlabelled"].n_atoms[0]) == 6
    empty = tmp_path / "empty.extxyz"
    empty.write_text("")
    with pytest.raises(ValueError):
        AtomicDataModule(str(tmp_path / "labelled.extxyz"), split={"method": "random", "sizes": [4, 2, 0]},
                         unlabelled_source=str(empty)).setup()
