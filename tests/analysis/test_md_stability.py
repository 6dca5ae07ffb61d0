import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.emt import EMT

from zoo.analysis import md_stability
from zoo.analysis.md_stability import (
    bond_lengths,
    collapse_frame,
    distance_histogram,
    find_bonds,
    h_error,
)


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
