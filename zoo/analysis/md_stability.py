"""MD stability of a force field, following "Forces are not enough" (Fu et al., TMLR 2023).

A simulation (NVT, 500 K, 0.5 fs for MD17 molecules) *collapses* at the first frame where any
bond length deviates from its mean in the reference data by more than 0.5 Å; its *stable time* is
the simulated time before that. A hydrogen's bond is measured to the nearest atom of its
partner's element, so that a proton moving between two oxygens (malonaldehyde) is not a
collapse. The distribution of interatomic distances h(r) of the stable
part is compared with the reference data's: ``h_error = ∫ |h(r) - h_ref(r)| dr`` (both
normalised to unit area, so the error lies in [0, 2]).

Pieces: :func:`find_bonds` and :func:`bond_lengths`, :func:`collapse_frame`,
:func:`distance_histogram` and :func:`h_error`, and :func:`md_stability`, which runs ASE's
Langevin dynamics with any calculator (e.g. ``model.as_calculator()``) and stops at collapse;
:func:`md_stability_replicas` runs several trajectories as one batch, through a model's batched
``predict`` or, for an ASE calculator that gives per-atom energies, :func:`joined_predict`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixConstraint

#: Bond-length deviation (Å) that counts as a collapse.
COLLAPSE_THRESHOLD = 0.5
#: seconds between the progress lines of a run given a ``progress`` callable
PROGRESS_SECONDS = 30.0


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


def bond_lengths(positions: np.ndarray, bonds: np.ndarray, numbers=None) -> np.ndarray:
    """[n_frames, n_atoms, 3] (or one frame) and bonds [n_bonds, 2] -> lengths [n_frames, n_bonds].

    With the structure's ``numbers``, a hydrogen's bond is measured to the nearest atom of its
    partner's element: a proton that moves from one oxygen to another (malonaldehyde's
    intramolecular transfer, a low barrier at PBE) keeps a bond of normal length instead of
    counting as a broken one.
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, *np.shape(positions)[-2:])
    lengths = np.linalg.norm(positions[:, bonds[:, 0]] - positions[:, bonds[:, 1]], axis=-1)
    if numbers is None:
        return lengths
    numbers = np.asarray(numbers)
    for b, (i, j) in enumerate(bonds):
        if (numbers[i] == 1) == (numbers[j] == 1):
            continue
        hydrogen, partner = (i, j) if numbers[i] == 1 else (j, i)
        candidates = np.flatnonzero(numbers == numbers[partner])
        lengths[:, b] = np.linalg.norm(positions[:, candidates] - positions[:, [hydrogen]], axis=-1).min(axis=1)
    return lengths


def collapse_frame(positions: np.ndarray, bonds: np.ndarray, reference_lengths: np.ndarray,
                   threshold: float = COLLAPSE_THRESHOLD, numbers=None) -> int | None:
    """The first frame in which a bond deviates from its reference length by more than
    ``threshold`` (Å), or ``None`` if none does (``numbers``: as :func:`bond_lengths`)."""
    deviation = np.abs(bond_lengths(positions, bonds, numbers) - np.asarray(reference_lengths)[None, :])
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


def md_stability(atoms, calculator, reference_positions: np.ndarray, **options) -> StabilityResult:
    """Run Langevin NVT MD from ``atoms`` until ``time_ps`` or collapse: the one-copy case of
    :func:`md_stability_replicas`, which takes the same keyword ``options`` (``time_ps``,
    ``temperature``, ``timestep_fs``, ``friction``, ``record_every``, ``threshold``, ``seed``).

    Args:
        atoms: the starting structure (not modified).
        calculator: an ASE calculator (eV, eV/Å), e.g. ``model.as_calculator()``.
        reference_positions: [n_frames, n_atoms, 3] reference data (the training set, or a DFT
            trajectory) of the same molecule, atoms in the same order: reference bond lengths
            and h(r).
    """
    (result,) = md_stability_replicas([atoms], calculator, reference_positions, **options)
    return result


def md_stability_replicas(
    starts: Sequence,
    calculator,
    reference_positions: np.ndarray,
    time_ps: float = 1.0,
    temperature: float = 500.0,
    timestep_fs: float = 0.5,
    friction: float = 0.01,
    record_every: int = 10,
    threshold: float = COLLAPSE_THRESHOLD,
    seed: int = 0,
    predict: Callable[[list], list[dict]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[StabilityResult]:
    """:func:`md_stability` for several trajectories of one molecule at once, one per start structure.

    The copies are integrated together, as one ASE :class:`~ase.Atoms` of independent molecules
    (each keeps its own centre of mass, none interacts with another), so that a model that
    evaluates a batch of structures in one call (``predict``, e.g. a zoo calculator's
    :meth:`~zoo.models.ZooCalculator.predict`) runs them at once: on one CPU thread a call on five
    ethanol molecules takes 1.8x the time of a call on one.
    A copy that collapses is frozen where it collapsed and no longer evaluated; the run goes on
    until ``time_ps`` or until every copy has collapsed. The copies draw their velocities and
    thermostat noise from one generator (``seed``), so a copy's trajectory differs from a
    single run's from the same start, with the same statistics.

    Args:
        starts: the starting structures, one per trajectory, atoms in the same order.
        calculator: an ASE calculator, called on one copy at a time when ``predict`` is ``None``.
        predict: energies and forces of a list of structures in one call (``[{"energy": eV,
            "forces": [n_atoms, 3] eV/Å}, ...]``), used instead of ``calculator``.
        reference_positions: [n_frames, n_atoms, 3] reference data of the molecule (as
            :func:`md_stability`'s).
        time_ps: length of the run.
        temperature: K.
        timestep_fs: time step.
        friction: Langevin friction (1/fs).
        record_every: record (and check) a frame every this many steps.
        threshold: bond deviation (Å) that counts as a collapse.
        seed: for the initial velocities and the thermostat.
        progress: called with a line of progress (simulated time, copies still stable, steps/s,
            seconds left) every ``PROGRESS_SECONDS`` and at the end, e.g. ``print``.

    Returns:
        One :class:`StabilityResult` per start, in order; ``steps_per_second`` is the whole run's
        (every copy advances one step per step).
    """
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

    n_atoms = len(starts[0])
    reference_positions = np.asarray(reference_positions, dtype=np.float64)
    if reference_positions.shape[1:] != (n_atoms, 3):
        raise ValueError(f"reference positions have shape {reference_positions.shape}, expected [n, {n_atoms}, 3]")
    if any(list(start.numbers) != list(starts[0].numbers) for start in starts):
        raise ValueError("the start structures must be the same molecule, atoms in the same order")
    bonds = find_bonds(starts[0].numbers, reference_positions[0])
    reference_lengths = bond_lengths(reference_positions, bonds, starts[0].numbers).mean(axis=0)

    rng = np.random.default_rng(seed)
    copies = []
    for start in starts:
        copy = start.copy()
        MaxwellBoltzmannDistribution(copy, temperature_K=temperature, rng=rng)
        Stationary(copy)
        ZeroRotation(copy)
        copies.append(copy)
    system = _Replicas.join(copies)
    system.calc = _Replicas(calculator, predict, n_atoms, len(copies))
    system.calc.constrain(system)
    dynamics = Langevin(system, timestep_fs * units.fs, temperature_K=temperature, friction=friction / units.fs,
                        fixcm=False, rng=rng)
    n_steps_total = round(time_ps * 1000.0 / timestep_fs)
    frames = [[copy.get_positions()] for copy in copies]
    # per copy, if it collapsed: (steps before the collapsed frame, steps run)
    collapses: list[tuple[int, int] | None] = [None] * len(copies)
    steps = 0
    start_time = last_report = time.perf_counter()
    while steps < n_steps_total and system.calc.active.any():
        n = min(record_every, n_steps_total - steps)
        dynamics.run(n)
        steps += n
        positions = system.calc.split(system.get_positions())
        for k in np.flatnonzero(system.calc.active):
            frames[k].append(positions[k])
            if collapse_frame(positions[k][None], bonds, reference_lengths, threshold, starts[0].numbers) is not None:
                # the collapsed frame is the first unstable one: the stable time ends at the frame before it
                collapses[k] = (steps - n, steps)
                system.calc.freeze(system, k)
        now = time.perf_counter()
        if progress is not None and (now - last_report >= PROGRESS_SECONDS or steps == n_steps_total):
            last_report, rate = now, steps / (now - start_time)
            progress(f"[md stability] {steps * timestep_fs / 1000:.2f}/{time_ps:g} ps, {int(system.calc.active.sum())} "
                     f"of {len(copies)} copies stable, {rate:.1f} steps/s, {(n_steps_total - steps) / rate:.0f} s left")
    elapsed = time.perf_counter() - start_time
    results = []
    for k, collapse in enumerate(collapses):
        positions = np.stack(frames[k])
        stable_steps, run_steps = (steps, steps) if collapse is None else collapse
        results.append(StabilityResult(
            stable_time_ps=stable_steps * timestep_fs / 1000.0,
            collapsed=collapse is not None,
            n_steps=run_steps,
            h_error=h_error(positions if collapse is None else positions[:-1], reference_positions),
            positions=positions,
            steps_per_second=steps / elapsed if elapsed > 0 else float("inf"),
        ))
    return results


def joined_predict(calculator, gap: float = 50.0) -> Callable[[list], list[dict]]:
    """A batched ``predict`` for :func:`md_stability_replicas` from an ASE calculator of a
    short-range model that gives per-atom energies (``"energies"``, as mace-torch's
    ``MACECalculator`` and ASE's EMT do): the structures are evaluated in one call, as one system,
    each structure's energy the sum of its atoms'. For a model whose cost per call is mostly fixed
    (small molecules on CPU) this runs several trajectories for little more than one.

    The system is a periodic box of the structures side by side, every atom at least ``gap`` Å
    (beyond the model's cutoff) from any atom of another structure or periodic image: a box, not
    structures far apart in vacuum, because neighbour lists such as mace-torch's size their bins
    to a vacuum system's extent.

    Example:
        >>> from ase.build import molecule
        >>> from ase.calculators.emt import EMT
        >>> water, ammonia = joined_predict(EMT())([molecule("H2O"), molecule("NH3")])
        >>> water.keys() == ammonia.keys() == {"energy", "forces"}
        True
    """

    def predict(images: list) -> list[dict]:
        centred = [image.positions - (image.positions.max(axis=0) + image.positions.min(axis=0)) / 2
                   for image in images]
        box = np.max([np.ptp(positions, axis=0) for positions in centred], axis=0) + gap
        system = Atoms(numbers=np.concatenate([image.numbers for image in images]),
                       positions=np.concatenate([positions + [k * box[0], 0.0, 0.0]
                                                 for k, positions in enumerate(centred)]),
                       cell=[len(images) * box[0], box[1], box[2]], pbc=True)
        system.calc = calculator
        forces, energies = system.get_forces(), system.get_potential_energies()
        bounds = np.cumsum([0] + [len(image) for image in images])
        return [{"energy": float(energies[a:b].sum()), "forces": forces[a:b]} for a, b in zip(bounds[:-1], bounds[1:])]

    return predict


class _Replicas(Calculator):
    """Copies of one molecule as one :class:`~ase.Atoms`: each copy's energy and forces from the
    wrapped calculator (or a batched ``predict``), frozen copies left out."""

    implemented_properties = ["energy", "forces"]
    #: Å between copies along x: far beyond any model's cutoff
    spacing = 1000.0

    def __init__(self, calculator, predict, n_atoms: int, n_copies: int):
        super().__init__()
        self.inner, self.batched = calculator, predict
        self.n_atoms = n_atoms
        self.active = np.ones(n_copies, dtype=bool)

    @classmethod
    def join(cls, copies: list):
        system = copies[0].copy()
        for k, copy in enumerate(copies[1:], start=1):
            moved = copy.copy()
            moved.translate([k * cls.spacing, 0.0, 0.0])
            system += moved
        return system

    def split(self, positions: np.ndarray) -> np.ndarray:
        """The joined system's positions -> [n_copies, n_atoms, 3], each copy where it started."""
        positions = positions.reshape(len(self.active), self.n_atoms, 3).copy()
        positions[:, :, 0] -= self.spacing * np.arange(len(self.active))[:, None]
        return positions

    def _indices(self, k: int) -> np.ndarray:
        return np.arange(k * self.n_atoms, (k + 1) * self.n_atoms)

    def constrain(self, system) -> None:
        """Each active copy keeps its centre of mass (ASE's fixcm=True would bias NVT sampling); a
        frozen copy stays where it is."""
        from ase.constraints import FixAtoms

        constraints = [_FixCentresOfMass([self._indices(k) for k in np.flatnonzero(self.active)])]
        if not self.active.all():
            frozen = np.concatenate([self._indices(k) for k in np.flatnonzero(~self.active)])
            constraints.append(FixAtoms(indices=frozen))
        system.set_constraint(constraints)

    def freeze(self, system, k: int) -> None:
        self.active[k] = False
        momenta = system.get_momenta()
        momenta[self._indices(k)] = 0.0
        system.set_momenta(momenta, apply_constraint=False)
        self.constrain(system)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        active = np.flatnonzero(self.active)
        images = []
        for k in active:
            image = self.atoms[self._indices(k)]
            image.translate([-k * self.spacing, 0.0, 0.0])
            image.set_constraint()
            images.append(image)
        if self.batched is not None:
            results = self.batched(images)
        else:
            results = []
            for image in images:
                image.calc = self.inner
                results.append({"energy": image.get_potential_energy(), "forces": image.get_forces()})
        forces = np.zeros((len(self.atoms), 3))
        for k, result in zip(active, results):
            forces[self._indices(k)] = result["forces"]
        energy = float(sum(result["energy"] for result in results))
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


class _FixCentresOfMass(FixConstraint):
    """ASE's ``FixCom`` for several groups of atoms at once, each its own centre of mass (ASE
    3.29's ``FixSubsetCom`` moves every atom when it corrects one group's centre)."""

    def __init__(self, groups: list[np.ndarray]):
        self.groups = groups

    def get_removed_dof(self, atoms):
        return 3 * len(self.groups)

    def adjust_positions(self, atoms, new):
        masses, old = atoms.get_masses(), atoms.positions
        for group in self.groups:
            weights = masses[group] / masses[group].sum()
            new[group] += weights @ (old[group] - new[group])

    def adjust_momenta(self, atoms, momenta):
        masses = atoms.get_masses()
        for group in self.groups:
            momenta[group] -= masses[group, None] * (momenta[group].sum(axis=0) / masses[group].sum())

    def adjust_forces(self, atoms, forces):
        masses = atoms.get_masses()
        for group in self.groups:  # as FixCom: Eqs. (3) and (7) of doi:10.1021/jp9722824
            forces[group] -= masses[group, None] * (masses[group] @ forces[group] / (masses[group] ** 2).sum())

    def todict(self):
        return {"name": type(self).__name__, "kwargs": {"groups": [group.tolist() for group in self.groups]}}
