from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.io import read

from zoo.analysis import joined_predict, md_stability, md_stability_replicas
from zoo.analysis.md_stability import (
    bond_lengths,
    collapse_frame,
    distance_histogram,
    find_bonds,
    h_error,
)

ROOT = Path(__file__).resolve().parents[2]


def _vibrating(n_frames=200, amplitude=0.05, seed=0):
    """A synthetic 'stable' ethanol trajectory: small random vibrations around the equilibrium."""
    rng = np.random.default_rng(seed)
    atoms = molecule("CH3CH2OH")
    return atoms, atoms.positions[None] + amplitude * rng.standard_normal((n_frames, len(atoms), 3))


def test_bonds_of_ethanol():
    atoms = molecule("CH3CH2OH")
    bonds = find_bonds(atoms.numbers, atoms.positions)
    assert len(bonds) == 8  # C-C, C-O, O-H, 5 C-H
    assert (bond_lengths(atoms.positions, bonds) < 1.6).all()


def test_collapse_is_flagged_and_stable_run_is_not():
    atoms, reference = _vibrating()
    bonds = find_bonds(atoms.numbers, atoms.positions)
    lengths = bond_lengths(reference, bonds).mean(axis=0)
    _, stable = _vibrating(seed=1)
    assert collapse_frame(stable, bonds, lengths) is None
    # an H atom flies off from frame 120 on: 0.01 Å per frame, past 0.5 Å 50 frames later
    collapsing = stable.copy()
    hydrogen = bonds[np.isin(bonds, np.flatnonzero(atoms.numbers == 1)).any(axis=1)][0].max()
    drift = np.clip(np.arange(len(collapsing)) - 120, 0, None)[:, None] * 0.01
    collapsing[:, hydrogen] += drift * np.array([1.0, 0, 0])
    frame = collapse_frame(collapsing, bonds, lengths)
    assert frame is not None and 160 < frame < 185


def test_h_error():
    _, a = _vibrating(seed=0)
    _, b = _vibrating(seed=1)
    r, h = distance_histogram(a)
    assert np.sum(h) * (r[1] - r[0]) == pytest.approx(1.0)
    same = h_error(a, b)
    stretched = h_error(1.3 * a, b)  # every distance 30 % longer
    assert same < 0.2 < stretched <= 2.0


def test_md_stability_runs_and_reports():
    # EMT on a Cu triangle: cheap, stable at 500 K for a few fs
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.25, 2.1, 0]])
    reference = atoms.positions[None] + 0.01 * np.random.default_rng(0).standard_normal((10, 3, 3))
    result = md_stability(atoms, EMT(), reference, time_ps=0.01, record_every=5, seed=0)
    assert not result.collapsed and result.stable_time_ps == pytest.approx(0.01)
    assert result.n_steps == 20 and result.positions.shape == (5, 3, 3) and result.steps_per_second > 0
    # a threshold no vibration stays under: the first recorded frame counts as a collapse
    collapsed = md_stability(atoms, EMT(), reference, time_ps=0.01, record_every=5, threshold=1e-6, seed=0)
    assert collapsed.collapsed and collapsed.stable_time_ps == 0.0 and collapsed.n_steps == 5


def _copper_starts(n, seed=0):
    rng = np.random.default_rng(seed)
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.25, 2.1, 0]])
    starts = []
    for _ in range(n):
        start = atoms.copy()
        start.positions += 0.02 * rng.standard_normal((3, 3))
        starts.append(start)
    return atoms, starts


def _emt_batch(images):
    results = []
    for image in images:
        image = image.copy()
        image.calc = EMT()
        results.append({"energy": image.get_potential_energy(), "forces": image.get_forces()})
    return results


def test_replicas_run_independently_and_keep_their_centres_of_mass():
    atoms, starts = _copper_starts(3)
    reference = atoms.positions[None] + 0.01 * np.random.default_rng(0).standard_normal((10, 3, 3))
    one_by_one = md_stability_replicas(starts, EMT(), reference, time_ps=0.01, record_every=5, seed=3)
    batched = md_stability_replicas(starts, None, reference, time_ps=0.01, record_every=5, seed=3, predict=_emt_batch)
    assert len(one_by_one) == 3
    for result, same, start in zip(one_by_one, batched, starts):
        assert not result.collapsed and result.n_steps == 20 and result.positions.shape == (5, 3, 3)
        np.testing.assert_allclose(result.positions, same.positions, atol=1e-12)  # the batch is the same physics
        np.testing.assert_allclose(result.positions[0], start.positions)  # where each copy started, unmoved
        centres = result.positions.mean(axis=1)  # equal masses
        np.testing.assert_allclose(centres, centres[:1].repeat(len(centres), 0), atol=1e-10)
        assert np.abs(result.positions[-1] - result.positions[0]).max() > 1e-4  # and it moved
    # the copies got different velocities: different trajectories
    assert np.abs(one_by_one[0].positions[-1] - one_by_one[0].positions[0]
                  - (one_by_one[1].positions[-1] - one_by_one[1].positions[0])).max() > 1e-4


def test_joined_predict_is_each_structure_on_its_own():
    _, starts = _copper_starts(3)
    starts[2] = molecule("H2O")  # another molecule, other atom count: split by each structure's atoms
    joined = joined_predict(EMT())(starts)
    for result, single in zip(joined, _emt_batch(starts)):
        assert result["energy"] == pytest.approx(single["energy"], abs=1e-10)
        np.testing.assert_allclose(result["forces"], single["forces"], atol=1e-10)
    # and as the replicas' predict, the same trajectories as one call per copy
    atoms, starts = _copper_starts(2)
    reference = atoms.positions[None] + 0.01 * np.random.default_rng(0).standard_normal((10, 3, 3))
    one_by_one = md_stability_replicas(starts, EMT(), reference, time_ps=0.01, record_every=5, seed=3)
    joined = md_stability_replicas(starts, None, reference, time_ps=0.01, record_every=5, seed=3,
                                   predict=joined_predict(EMT()))
    for result, same in zip(one_by_one, joined):
        np.testing.assert_allclose(result.positions, same.positions, atol=1e-10)


def test_a_collapsed_replica_is_frozen_while_the_others_go_on():
    atoms, starts = _copper_starts(2)
    starts[1].positions[1] += [0.8, 0.0, 0.0]  # a Cu-Cu bond stretched past the threshold: collapses at once
    reference = atoms.positions[None] + 0.01 * np.random.default_rng(0).standard_normal((10, 3, 3))
    seen = []

    def batch(images):
        seen.append(len(images))
        return _emt_batch(images)

    stable, collapsed = md_stability_replicas(starts, None, reference, time_ps=0.01, record_every=5, predict=batch)
    assert collapsed.collapsed and collapsed.stable_time_ps == 0.0 and collapsed.n_steps == 5
    assert collapsed.positions.shape == (2, 3, 3)
    assert not stable.collapsed and stable.stable_time_ps == pytest.approx(0.01) and stable.n_steps == 20
    assert seen[0] == 2 and seen[-1] == 1  # the collapsed copy is no longer evaluated


def test_replicas_must_be_one_molecule():
    atoms, starts = _copper_starts(1)
    with pytest.raises(ValueError, match="same molecule"):
        md_stability_replicas([starts[0], Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])], EMT(), atoms.positions[None])


def test_replicas_report_progress_to_the_end():
    atoms, starts = _copper_starts(2)
    lines = []
    md_stability_replicas(starts, EMT(), atoms.positions[None], time_ps=0.01, record_every=5, progress=lines.append)
    # 20 steps take milliseconds: no line before the end, and the end's line
    assert len(lines) == 1
    assert lines[0].startswith("[md stability] 0.01/0.01 ps, 2 of 2 copies stable,") and lines[0].endswith(" 0 s left")


def test_a_proton_moving_to_the_other_oxygen_is_no_collapse_but_a_lost_hydrogen_is():
    # malonaldehyde's enol proton (H5 on O0) moved to 1.0 Å from O4, as at PBE it does at 500 K
    reference = read(ROOT / "data" / "malonaldehyde" / "malonaldehyde_pbe_def2svp_test.extxyz", index=":")
    numbers, positions = reference[0].numbers, np.stack([a.positions for a in reference])
    bonds = find_bonds(numbers, positions[0])
    lengths = bond_lengths(positions, bonds, numbers).mean(axis=0)
    transferred = positions[0].copy()
    direction = (positions[0, 0] - positions[0, 4]) / np.linalg.norm(positions[0, 0] - positions[0, 4])
    transferred[5] = positions[0, 4] + 1.0 * direction
    assert collapse_frame(transferred[None], bonds, lengths, numbers=numbers) is None
    assert collapse_frame(transferred[None], bonds, lengths) == 0  # measured to O0 it looks broken
    lost = positions[0].copy()
    lost[5] += 3.0 * direction
    assert collapse_frame(lost[None], bonds, lengths, numbers=numbers) == 0
