"""The datasets committed under data/ are what their data card says (data/README.md)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.data import keys
from zoo.data.readers import HamiltonianMetadata, read_hamiltonian_h5
from zoo.qc.level import LevelOfTheory

DATA = Path(__file__).resolve().parent.parent / "data"
pytestmark = pytest.mark.usefixtures("pyscf_one_thread")


def test_water_hamiltonians_match_pyscf_at_their_level_of_theory():
    level = LevelOfTheory(method="rks", xc="b3lyp5", basis="def2-svp", grid_level=3)
    expect = HamiltonianMetadata(level, pyscf_version="any", ao_convention="pyscf")
    dataset = read_hamiltonian_h5(DATA / "water" / "water_b3lyp5_def2svp.h5", expect=expect, dtype=torch.float64)
    assert len(dataset) == 500
    data = dataset[137]
    n = int(data[keys.N_AO])
    fock, overlap, density = (data[k].reshape(n, n).numpy() for k in (keys.HAMILTONIAN, keys.OVERLAP,
                                                                     keys.DENSITY_MATRIX))
    mf = level.build_scf(level.build_mole(data[keys.ATOMIC_NUMBERS].numpy(), data[keys.POSITIONS].numpy()))
    np.testing.assert_allclose(overlap, mf.get_ovlp(), atol=1e-10)
    np.testing.assert_allclose(fock, mf.get_fock(dm=density), atol=1e-6)  # the stored H is H[D]
    assert np.trace(density @ overlap) == pytest.approx(10.0, abs=1e-6)  # 10 electrons
    energies = np.linalg.eigvalsh(np.linalg.inv(np.linalg.cholesky(overlap)) @ fock
                                  @ np.linalg.inv(np.linalg.cholesky(overlap)).T)
    np.testing.assert_allclose(energies, data[keys.ORBITAL_ENERGIES].numpy(), atol=1e-6)


@pytest.mark.parametrize("molecule", ["ethanol", "malonaldehyde"])
def test_md17_labels_match_pyscf_at_their_level_of_theory(molecule):
    from zoo.data.readers.ase_io import read_ase
    from zoo.data.units import HARTREE
    from zoo.datagen.files import read_structures

    path = DATA / molecule / f"{molecule}_pbe_def2svp_test.extxyz"
    frames = read_structures(path)
    info = frames[0].info
    assert (info["xc"], info["basis"], info["grid_level"], info["density_fitting"]) == ("pbe", "def2-svp", 3, False)
    assert [f.info["source_index"] for f in frames] == list(range(len(frames)))  # in order, none missing
    data = read_ase(path, indices=[7], dtype="float64")[0]
    level = LevelOfTheory(method="rks", xc="pbe", basis="def2-svp", grid_level=3)
    mf = level.build_scf(level.build_mole(data[keys.ATOMIC_NUMBERS].numpy(), data[keys.POSITIONS].numpy()))
    assert float(data[keys.ENERGY]) == pytest.approx(mf.kernel() * HARTREE, abs=1e-5)
    assert data[keys.FORCES].abs().max() < 20.0  # eV/Å: a 500 K frame, not a broken one


@pytest.mark.parametrize("split, frames", [("train", 300), ("test", 100)])
def test_paracetamol_labels_cover_every_md_frame_at_the_card_level(split, frames):
    from zoo.datagen.files import read_structures

    labelled = read_structures(DATA / "paracetamol" / f"paracetamol_pbe_def2svp_{split}.extxyz")
    md = read_structures(DATA / "paracetamol" / f"paracetamol_md500K_{split}.extxyz")
    assert len(md) == frames
    assert [f.info["source_index"] for f in labelled] == list(range(frames))  # in order, none missing
    info = labelled[0].info
    assert (info["xc"], info["basis"], info["grid_level"], info["density_fitting"]) == ("pbe", "def2-svp", 3, True)
    for atoms, source in zip(labelled, md):
        np.testing.assert_allclose(atoms.positions, source.positions, atol=1e-6)  # each label on its own frame
    forces = np.stack([atoms.get_forces() for atoms in labelled])
    assert np.isfinite(forces).all() and np.abs(forces).max() < 20.0  # eV/Å: 500 K frames, none broken


def test_malonaldehyde_is_the_hydrogen_bonded_enol():
    from zoo.datagen.files import read_structures

    frames = read_structures(DATA / "malonaldehyde" / "malonaldehyde_pbe_def2svp_train.extxyz")
    assert len(frames) == 1000
    oxygens = [i for i, z in enumerate(frames[0].numbers) if z == 8]
    distances = np.array([frame.get_distance(*oxygens) for frame in frames])
    assert distances.mean() < 2.9  # the open enol has O-O ~4.2 Å


def test_qm9_hamiltonian_sets_are_disjoint_and_sized_as_the_card_says():
    from zoo.datagen.files import read_structures

    folder = DATA / "qm9_hamiltonian"
    rows, heavy = {}, {}
    for part in ("small", "small_extra", "large_unlabelled", "large_test"):
        frames = read_structures(folder / f"{part}.extxyz")
        rows[part] = {int(frame.info["qm9_row"]) for frame in frames}
        assert len(rows[part]) == len(frames)
        heavy[part] = {int((frame.numbers > 1).sum()) for frame in frames}
    assert {part: len(found) for part, found in rows.items()} == {
        "small": 197, "small_extra": 897, "large_unlabelled": 1921, "large_test": 49}
    parts = list(rows)
    for i, first in enumerate(parts):
        for second in parts[i + 1:]:
            assert not rows[first] & rows[second], (first, second)
    assert max(heavy["small"]) == 6 and heavy["small_extra"] <= {1, 2, 3, 4, 5, 6, 7} and 7 in heavy["small_extra"]
    assert min(heavy["large_test"]) >= 8


def test_consistency_training_data_keep_the_test_molecules_out_and_the_sameconf_minima_in_qm9s_conformer():
    from zoo.datagen.files import read_structures
    from zoo.metrics import best_rmsd

    folder = DATA / "consistency"
    test_rows = {int(frame.info["qm9_row"]) for frame in read_structures(folder / "qm9_test.extxyz")}
    assert test_rows == set(range(9, 2000, 10))
    train = read_structures(folder / "qm9_train.extxyz")
    kinds = [(frame.info["structure_kind"], "energy" in frame.calc.results if frame.calc else False) for frame in train]
    assert {kind: kinds.count(kind) for kind in set(kinds)} == {
        ("xtb_optimized", False): 1461, ("xtb_optimized", True): 332, ("perturbed", True): 332}
    for part, reference, size in (("qm9_xtb", "qm9_xtb_reference", 1464), ("qm9_dft_xtb", "qm9_dft_reference", 334)):
        minima = read_structures(folder / f"{part}_sameconf.extxyz")
        references = {int(f.info["qm9_row"]): f for f in read_structures(folder / f"{reference}_sameconf.extxyz")}
        assert len(minima) == size and not {int(f.info["qm9_row"]) for f in minima} & test_rows
        assert {f.info["sampler"] for f in minima} == {"QM9 geometry, GFN2-xTB BFGS fmax 0.01 eV/Å"}
        sample = minima[::10]
        rmsd = np.array([best_rmsd(f.positions, references[int(f.info["qm9_row"])].positions, f.info["smiles"])
                         for f in sample])
        # QM9's conformer relaxed at another level; a few flat rotors turn (RDKit's conformers: 0.68 Å mean)
        assert (rmsd < 0.25).mean() > 0.9 and rmsd.mean() < 0.15, (rmsd < 0.25).mean()


def test_organic_dft_frames_are_the_first_md_frame_of_two_molecules_in_five_and_their_labels_sit_on_them():
    from zoo.datagen import failures
    from zoo.datagen.files import read_structures

    folder = DATA / "organic"
    frames = read_structures(folder / "qm9_md500_dft_frames.extxyz")
    starts = [int(f.info["start_index"]) for f in frames]
    assert len(frames) == 1308 and starts == sorted(starts) and {k % 5 for k in starts} == {0, 1}
    assert len({int(f.info["qm9_row"]) for f in frames}) == len(frames)  # one frame a molecule
    for frame, k in zip(frames, starts):  # molecule k's MD is seeded with seed + k (seed 0), first frame kept
        assert frame.info["md_step"] == 130 and frame.info["sampler"].endswith(f"seed {k}")
    test_rows = set(range(20, 130831, 400))
    assert not test_rows & {int(f.info["qm9_row"]) for f in frames}
    shards = sorted(folder.glob("qm9_md500_pbe_def2svp.shard-*-of-2.extxyz"))
    assert shards, "the labels are committed as they grow"
    for path in shards:
        shard = int(path.name.split(".shard-")[1].split("-of-")[0])
        labelled = read_structures(path)
        sources = [int(atoms.info["source_index"]) for atoms in labelled]
        log = failures.failures_path(path)
        failed = {int(entry["index"]) for entry in failures.entries(log)} if log.is_file() else set()
        # the shard's frames in order: every one up to the last labelled is labelled or logged as failed
        assert sources == sorted(sources) and set(range(shard, sources[-1] + 1, 2)) == set(sources) | failed
        info = labelled[0].info
        assert (info["xc"], info["basis"], info["grid_level"], info["density_fitting"]) == ("pbe", "def2-svp", 3, True)
        for atoms, source in zip(labelled, sources):
            np.testing.assert_allclose(atoms.positions, frames[source].positions, atol=1e-6)
            assert atoms.info["qm9_row"] == frames[source].info["qm9_row"]
        forces = np.concatenate([atoms.get_forces() for atoms in labelled])
        assert np.isfinite(forces).all() and np.abs(forces).max() < 20.0  # eV/Å
    # the 504 that trained organic-dens-pbe-def2svp: labelled frames of these, each once
    merged = read_structures(folder / "qm9_md500_pbe_def2svp_504.extxyz")
    sources = [int(atoms.info["source_index"]) for atoms in merged]
    assert len(merged) == 504 and len(set(sources)) == 504
    for atoms, source in zip(merged, sources):
        np.testing.assert_allclose(atoms.positions, frames[source].positions, atol=1e-6)
        assert atoms.info["xc"] == "pbe" and np.isfinite(atoms.get_forces()).all()
