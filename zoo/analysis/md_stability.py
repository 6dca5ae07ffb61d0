"""MD stability of a force field, following "Forces are not enough" (Fu et al., TMLR 2023).

A simulation (NVT, 500 K, 0.5 fs for MD17 molecules) *collapses* at the first frame where any
bond length deviates from its mean in the reference data by more than 0.5 Å; its *stable time* is
the simulated time before that. The distribution of interatomic distances h(r) of the stable
part is compared with the reference data's: ``h_error = ∫ |h(r) - h_ref(r)| dr`` (both
normalised to unit area, so the error lies in [0, 2]).

Pieces: :func:`find_bonds` and :func:`bond_lengths`, :func:`collapse_frame`,
:func:`distance_histogram` and :func:`h_error`, and :func:`md_stability`, which runs ASE's
Langevin dynamics with any calculator (e.g. ``model.as_calculator()``) and stops at collapse.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

#: Bond-length deviation (Å) that counts as a collapse.
COLLAPSE_THRESHOLD = 0.5


@dataclass
class StabilityResult:
    """Outcome of :func:`md_stability`.

    Attributes:
        stable_time_ps: simulated time before collapse (the whole run if it never collapsed).
        collapsed: whether the run collapsed.
        n_steps: MD steps run.
        h_error: ∫ |h(r) - h_ref(r)| dr over the frames before collapse.
        positions: [n_frames, n_atoms, 3] the recorded frames (Å).
        steps_per_second: MD speed, wall clock, calculator included.
    """

    stable_time_ps: float
    collapsed: bool
    n_steps: int
    h_error: float
    positions: np.ndarray
    steps_per_second: float


def find_bonds(numbers, positions, scale: float = 1.2) -> np.ndarray:
    """Bonded pairs [n_bonds, 2] (i < j) of a structure: closer than ``scale`` times the sum of
    their covalent radii (ASE's ``natural_cutoffs`` halves, hence ``scale`` on each)."""
    from ase import Atoms
    from ase.neighborlist import natural_cutoffs, neighbor_list

    atoms = Atoms(numbers=numbers, positions=positions)
    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=scale))
    pairs = np.stack([i, j], axis=1)
    return np.unique(pairs[pairs[:, 0] < pairs[:, 1]], axis=0).reshape(-1, 2)


def bond_lengths(positions: np.ndarray, bonds: np.ndarray) -> np.ndarray:
    """[n_frames, n_atoms, 3] (or one frame) and bonds [n_bonds, 2] -> lengths [n_frames, n_bonds]."""
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, *np.shape(positions)[-2:])
    return np.linalg.norm(positions[:, bonds[:, 0]] - positions[:, bonds[:, 1]], axis=-1)


def collapse_frame(positions: np.ndarray, bonds: np.ndarray, reference_lengths: np.ndarray,
                   threshold: float = COLLAPSE_THRESHOLD) -> int | None:
    """The first frame in which a bond deviates from its reference length by more than
    ``threshold`` (Å), or ``None`` if none does."""
    deviation = np.abs(bond_lengths(positions, bonds) - np.asarray(reference_lengths)[None, :])
    broken = np.flatnonzero((deviation > threshold).any(axis=1))
    return int(broken[0]) if broken.size else None


def distance_histogram(positions: np.ndarray, r_max: float = 6.0, n_bins: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """h(r): the normalised histogram of all interatomic distances over frames [n_frames, n_atoms, 3].

    Returns ``(bin_centres, density)`` with ``sum(density) * bin_width == 1`` (for distances below
    ``r_max``).
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, *np.shape(positions)[-2:])
    i, j = np.triu_indices(positions.shape[1], k=1)
    distances = np.linalg.norm(positions[:, i] - positions[:, j], axis=-1).reshape(-1)
    edges = np.linspace(0.0, r_max, n_bins + 1)
    density, _ = np.histogram(distances, bins=edges, density=True)
    return 0.5 * (edges[1:] + edges[:-1]), density


def h_error(positions: np.ndarray, reference_positions: np.ndarray, r_max: float = 6.0, n_bins: int = 300) -> float:
    """∫ |h(r) - h_ref(r)| dr between the distance distributions of two sets of frames."""
    r, h = distance_histogram(positions, r_max, n_bins)
    _, h_ref = distance_histogram(reference_positions, r_max, n_bins)
    return float(np.abs(h - h_ref).sum() * (r[1] - r[0]))


def md_stability(
    atoms,
    calculator,
    reference_positions: np.ndarray,
    time_ps: float = 1.0,
    temperature: float = 500.0,
    timestep_fs: float = 0.5,
    friction: float = 0.01,
    record_every: int = 10,
    threshold: float = COLLAPSE_THRESHOLD,
    seed: int = 0,
) -> StabilityResult:
    """Run Langevin NVT MD from ``atoms`` until ``time_ps`` or collapse.

    Args:
        atoms: the starting structure (not modified).
        calculator: an ASE calculator (eV, eV/Å), e.g. ``model.as_calculator()``.
        reference_positions: [n_frames, n_atoms, 3] reference data (the training set, or a DFT
            trajectory) of the same molecule, atoms in the same order: reference bond lengths
            and h(r).
        time_ps: length of the run.
        temperature: K.
        timestep_fs: time step.
        friction: Langevin friction (1/fs).
        record_every: record (and check) a frame every this many steps.
        threshold: bond deviation (Å) that counts as a collapse.
        seed: for the initial velocities and the thermostat.
    """
    from ase import units
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import (
        MaxwellBoltzmannDistribution,
        Stationary,
        ZeroRotation,
    )

    reference_positions = np.asarray(reference_positions, dtype=np.float64)
    if reference_positions.shape[1:] != (len(atoms), 3):
        raise ValueError(f"reference positions have shape {reference_positions.shape}, expected [n, {len(atoms)}, 3]")
    bonds = find_bonds(atoms.numbers, reference_positions[0])
    reference_lengths = bond_lengths(reference_positions, bonds).mean(axis=0)

    atoms = atoms.copy()
    atoms.calc = calculator
    # the centre of mass stays put through a constraint (ASE's fixcm=True biases NVT sampling)
    atoms.set_constraint(FixCom())
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)
    ZeroRotation(atoms)
    dynamics = Langevin(atoms, timestep_fs * units.fs, temperature_K=temperature,
                        friction=friction / units.fs, fixcm=False, rng=rng)
    n_steps_total = round(time_ps * 1000.0 / timestep_fs)
    frames, steps, collapsed = [atoms.get_positions()], 0, False
    start = time.perf_counter()
    while steps < n_steps_total:
        n = min(record_every, n_steps_total - steps)
        dynamics.run(n)
        steps += n
        frames.append(atoms.get_positions())
        if collapse_frame(frames[-1][None], bonds, reference_lengths, threshold) is not None:
            collapsed = True
            break
    elapsed = time.perf_counter() - start
    positions = np.stack(frames)
    # the collapsed frame is the first unstable one: the stable time ends at the frame before it
    stable_steps = steps - (n if collapsed else 0)
    stable = positions[:-1] if collapsed else positions
    return StabilityResult(
        stable_time_ps=stable_steps * timestep_fs / 1000.0,
        collapsed=collapsed,
        n_steps=steps,
        h_error=h_error(stable, reference_positions),
        positions=positions,
        steps_per_second=steps / elapsed if elapsed > 0 else float("inf"),
    )
