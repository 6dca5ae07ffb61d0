"""Structures far from a model's training data get a warning naming the measure, never a silent answer.

Each model records its training domain (shortest distance per element pair, largest structure;
zoo.models.TrainingDomain) and the user-facing entry points check against it: the ASE calculator,
HamiltonianModel.predict, ConsistencyModel.energy and generate.
"""

import warnings

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import molecule
from torch_geometric.data import Batch
from torch_geometric.loader import DataLoader

import zoo
from zoo.data import AtomicData
from zoo.models import EquivariantBackbone, ExtrapolationWarning, ForceFieldModel, PropertyModel, TrainingDomain
from zoo.registry import load_manifest
from zoo.tasks import AtomisticTask, Output

BACKBONE = {"channels": 4, "l_max": 1, "num_layers": 1, "cutoff": 4.0, "radial_hidden": 8}


def _waters(n=4, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = molecule("H2O")
        atoms.positions += 0.02 * rng.standard_normal(atoms.positions.shape)
        frames.append(atoms)
    return frames


def _data(frames, dtype=torch.float32):
    return [AtomicData.from_ase(atoms, dtype=dtype) for atoms in frames]


def _domain(frames):
    domain = TrainingDomain(["H", "O"], cutoff=4.0)
    domain.fit(_data(frames))
    return domain


def _with_bond(atoms, i, j, length):
    """``atoms`` with atom ``j`` moved along the bond from ``i`` to ``length`` Å from it."""
    atoms = atoms.copy()
    direction = (atoms.positions[j] - atoms.positions[i]) / atoms.get_distance(i, j)
    atoms.positions[j] = atoms.positions[i] + length * direction
    return atoms


def _squeezed_water(oh=0.6):
    return _with_bond(molecule("H2O"), 0, 1, oh)


def test_fit_records_the_shortest_distance_per_element_pair_and_the_largest_structure():
    frames = _waters()
    domain = _domain(frames)
    oh = min(min(a.get_distance(0, 1), a.get_distance(0, 2)) for a in frames)
    hh = min(a.get_distance(1, 2) for a in frames)
    h, o = 0, 1  # element indices: H, O
    assert domain.shortest_distance[h, o] == domain.shortest_distance[o, h] == pytest.approx(oh, abs=1e-5)
    assert domain.shortest_distance[h, h] == pytest.approx(hh, abs=1e-5)
    assert domain.shortest_distance[o, o] == float("inf")  # one oxygen per water: never an O-O pair
    assert domain.max_atoms == 3
    # fitting again widens the domain (a fine-tune keeps what the pretrained model saw)
    dimer = Atoms("OH2OH2", positions=np.vstack([molecule("H2O").positions, molecule("H2O").positions + [2.9, 0, 0]]))
    domain.fit(_data([dimer]))
    assert domain.shortest_distance[o, o] == pytest.approx(2.9, abs=1e-5) and domain.max_atoms == 6
    assert domain.shortest_distance[h, o] == pytest.approx(oh, abs=1e-5)


def test_a_compressed_bond_warns_with_the_numbers():
    domain = _domain(_waters())
    shortest = float(domain.shortest_distance[0, 1])
    batch = Batch.from_data_list(_data([molecule("H2O"), _squeezed_water(0.6)]))
    with pytest.warns(ExtrapolationWarning) as record:
        domain.check(batch)
    assert len(record) == 1  # once per call
    message = str(record[0].message)
    assert (f"1 structure outside the model's training domain, where its predictions are extrapolated: structure 1: "
            f"atoms 0 (O) and 1 (H) are 0.600 Å apart, under 0.9 × the shortest O–H distance in the training data "
            f"({shortest:.3f} Å)") in message
    assert "structure 0" not in message


def test_a_pair_of_elements_never_that_close_in_training_warns():
    dimer = Atoms("OH2OH2", positions=np.vstack([molecule("H2O").positions, molecule("H2O").positions + [2.9, 0, 0]]))
    with pytest.warns(ExtrapolationWarning, match=r"atoms 0 \(O\) and 3 \(O\) are 2.900 Å apart, the training data "
                                                  r"have no O–O pair within 4 Å"):
        _domain(_waters()).check(Batch.from_data_list(_data([dimer])))


def test_a_big_structure_warns_and_a_normal_one_does_not():
    domain = _domain(_waters())
    cluster = Atoms("OH2" * 3, positions=np.vstack([molecule("H2O").positions + [6.0 * k, 0, 0] for k in range(3)]))
    with pytest.warns(ExtrapolationWarning, match=r"structure 0: 9 atoms, more than 1.5 × the largest training "
                                                  r"structure \(3 atoms\)"):
        domain.check(Batch.from_data_list(_data([cluster])))
    with pytest.warns(ExtrapolationWarning, match="9 atoms"):
        domain.check(Batch.from_data_list(_data([cluster])), geometry=False)  # sizes only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        domain.check(Batch.from_data_list(_data(_waters(8, seed=1))))


def test_an_unfitted_domain_checks_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TrainingDomain(["H", "O"], cutoff=4.0).check(Batch.from_data_list(_data([_squeezed_water(0.6)])))


def test_an_old_state_dict_without_the_domain_loads_strictly_as_unfitted():
    torch.manual_seed(0)
    model = PropertyModel(EquivariantBackbone(["H", "O"], **BACKBONE), ["energy"], hidden=8)
    model.domain.fit(_data(_waters()))
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("domain.")}
    model.load_state_dict(old, strict=True)
    assert not model.domain.shortest_distance.any() and model.domain.max_atoms == 0
    # only a wholly absent domain is accepted: strictness holds for everything else
    with pytest.raises(RuntimeError, match="Missing key.*domain.max_atoms"):
        model.load_state_dict({**old, "domain.shortest_distance": torch.ones(2, 2)}, strict=True)
    with pytest.raises(RuntimeError, match="Missing key.*readout.0.weight"):
        model.load_state_dict({k: v for k, v in old.items() if k != "readout.0.weight"}, strict=True)


def test_the_domain_travels_with_the_state_dict():
    torch.manual_seed(0)
    model = PropertyModel(EquivariantBackbone(["H", "O"], **BACKBONE), ["energy"], hidden=8)
    model.domain.fit(_data(_waters()))
    copy = PropertyModel(EquivariantBackbone(["H", "O"], **BACKBONE), ["energy"], hidden=8)
    copy.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(copy.domain.shortest_distance, model.domain.shortest_distance) and copy.domain.max_atoms == 3


def test_the_ethanol_force_field_warns_about_a_62_atom_alkane_and_a_squeezed_bond():
    from rdkit.Chem import rdDistGeom

    from zoo.data.molgraph import mol_from_smiles

    torch.manual_seed(0)
    model = ForceFieldModel(EquivariantBackbone(["H", "C", "O"], **BACKBONE), hidden=8)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        atoms = molecule("CH3CH2OH")
        atoms.positions += 0.03 * rng.standard_normal(atoms.positions.shape)
        frames.append(atoms)
    model.domain.fit(_data(frames))
    alkane = mol_from_smiles("C" * 20)
    rdDistGeom.EmbedMolecule(alkane, randomSeed=7)
    icosane = Atoms(numbers=[a.GetAtomicNum() for a in alkane.GetAtoms()],
                    positions=alkane.GetConformer().GetPositions())
    o, h = 2, 3  # ethanol's O and its hydrogen in ASE's order
    squeezed = _with_bond(molecule("CH3CH2OH"), o, h, 0.6)
    calculator = model.as_calculator()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        calculator.predict([molecule("CH3CH2OH")])
    with pytest.warns(ExtrapolationWarning) as record:
        calculator.predict([molecule("CH3CH2OH"), icosane, squeezed], batch_size=2)
    assert len(record) == 1
    message = str(record[0].message)
    assert "2 structures outside" in message and "structure 0" not in message
    assert "structure 1: 62 atoms, more than 1.5 × the largest training structure (9 atoms)" in message
    assert (f"structure 2: atoms {o} (O) and {h} (H) are 0.600 Å apart, "
            "under 0.9 × the shortest O–H distance") in message


def test_hamiltonian_predict_warns_about_an_oh_bond_of_0_6_angstrom(pyscf_one_thread):
    from zoo.models import HamiltonianModel

    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=1, cutoff=4.0, parity="full")
    model = HamiltonianModel(backbone, head_channels=4, pair_cutoff=8.0).double()
    model.domain.fit(_data(_waters(), torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.predict(molecule("H2O"))
    with pytest.warns(ExtrapolationWarning, match=r"structure 0: atoms 0 \(O\) and 1 \(H\) are 0.600 Å apart, "
                                                  r"under 0.9 × the shortest O–H distance in the training data "
                                                  r"\(0.9\d\d Å\)"):
        model.predict(_squeezed_water(0.6))


class _Frames(pl.LightningDataModule):
    def __init__(self, frames):
        super().__init__()
        self.train_dataset = _data(frames)
        for data in self.train_dataset:
            data.energy = torch.zeros(1)

    def train_dataloader(self):
        return DataLoader(self.train_dataset, batch_size=2)


def test_the_task_fits_the_domain_at_the_start_of_a_fresh_fit(tmp_path):
    torch.manual_seed(0)
    task = AtomisticTask(PropertyModel(EquivariantBackbone(["H", "O"], **BACKBONE), ["energy"], hidden=8),
                         [Output("energy")])
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(task, datamodule=_Frames(_waters()))
    expected = _domain(_waters())
    assert torch.equal(task.model.domain.shortest_distance, expected.shortest_distance)
    assert task.model.domain.max_atoms == 3


@pytest.mark.parametrize("name", [entry.name for entry in load_manifest().models])
def test_published_models_load_strictly_without_warnings_with_their_domain(name, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        task = zoo.load(name)  # strict: a missing or unexpected tensor would be a CheckpointFormatError
    domain = TrainingDomain.of(task.model)
    assert domain is not None
    distances = domain.shortest_distance.flatten()
    if int(domain.max_atoms) == 0:
        # saved before models recorded their domain: force fields kept their shortest training
        # distance as one number, which bounds every pair
        assert len(set(distances.tolist())) == 1
    else:
        # saved with the domain its training set fitted: a positive distance (or none seen) per pair
        assert bool((distances > 0).all()) and bool(torch.isfinite(distances).any())
