"""Structures to label: start geometries, GFN2-xTB optimisation, MD and displacements.

Force fields trained only on equilibrium geometries extrapolate badly, so datasets are made from
non-equilibrium structures: frames of a GFN2-xTB molecular dynamics run at elevated temperature,
or displacements along random directions or along normal modes with Boltzmann amplitudes. xTB is
~1000x cheaper than the DFT that labels the frames afterwards (:mod:`zoo.datagen.labelling`).

Everything here is deterministic given ``seed``. Structures are :class:`ase.Atoms` in Å; xTB
results are kept under their own names (``info["xtb_energy"]`` in eV, ``arrays["xtb_forces"]``
in eV/Å) so that no reader ever mistakes them for DFT labels. RDKit and tblite are imported
lazily, when used.

For multi-task training on heterogeneous data (Ren et al., NeurIPS 2024), :mod:`zoo.datagen.qm9`
makes the cheap structures of QM9 molecules, GFN2-xTB minima of RDKit conformers, next to QM9's
own geometries in the same atom order; :func:`displace` makes the perturbed copies. ``info["structure_kind"]`` says which is which. Runs over many molecules
(``zoo sample``, ``zoo sample-qm9``) are :mod:`zoo.datagen.sampling_runs`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path

import numpy as np

from zoo._files import exclusive_output
from zoo.data.readers.ase_io import write_extxyz
from zoo.datagen import failures as failure_log
from zoo.datagen import jobs
from zoo.datagen.files import check_shard, read_structures, shard_path
from zoo.datagen.jobs import Workers, log

XTB_METHOD = "GFN2-xTB"
THERMOSTATS = ("langevin", "nvt")
DISPLACEMENT_MODES = ("random", "normal_modes")
#: ``info["structure_kind"]`` of the frames made here: a GFN2-xTB minimum of an RDKit conformer,
#: QM9's own B3LYP/6-31G(2df,p) geometry, a displaced copy (:func:`displace`).
XTB_OPTIMIZED, QM9_REFERENCE, PERTURBED = "xtb_optimized", "qm9_reference", "perturbed"


# --- start structures -------------------------------------------------------------------------


def from_smiles(smiles: str, seed: int = 0):
    """A 3D structure for ``smiles``: :func:`~zoo.data.molgraph.mol_from_smiles`, then :func:`embed`.

    The atoms are in the order of :func:`~zoo.data.molgraph.mol_from_smiles`; ``info["smiles"]``
    is ``smiles`` as given and ``info["charge"]`` its total formal charge (read by the xTB
    calculator and checked by the labeller).

    Raises:
        ValueError: RDKit cannot parse the SMILES or cannot embed the molecule in 3D.
    """
    from zoo.data.molgraph import mol_from_smiles

    atoms = embed(mol_from_smiles(smiles), seed=seed)
    atoms.info["smiles"] = smiles
    return atoms


def read_smiles_file(path, seed: int = 0) -> list:
    """The molecules of a SMILES file as start structures: one ``SMILES [name]`` per line, blank
    lines and ``#`` comments skipped; molecule ``k`` embedded by :func:`from_smiles` with seed
    ``seed + k``, ``info["name"]`` its name (default: the SMILES).

    Raises:
        ValueError: a line RDKit cannot parse or embed (its number and text named), or no molecule.
    """
    starts = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        smiles, _, name = line.partition(" ")
        try:
            atoms = from_smiles(smiles, seed=seed + len(starts))
        except ValueError as error:
            raise ValueError(f"{path}, line {number} ({smiles!r}): {error}") from None
        atoms.info["name"] = name.strip() or smiles
        starts.append(atoms)
    if not starts:
        raise ValueError(f"{path} has no molecule: write one 'SMILES [name]' per line")
    return starts


def embed(mol, seed: int = 0):
    """:class:`ase.Atoms` of the RDKit molecule ``mol`` (explicit hydrogens) in its atom order.

    ETKDG embedding with ``seed``, then MMFF pre-optimisation (UFF for molecules MMFF has no
    parameters for). ``info["charge"]`` is the total formal charge.

    Raises:
        ValueError: RDKit cannot embed the molecule in 3D.
    """
    from ase import Atoms
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.Mol(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = int(seed)
    if AllChem.EmbedMolecule(mol, params) != 0:
        raise ValueError(f"RDKit could not embed {Chem.MolToSmiles(Chem.RemoveHs(mol))!r} in 3D (ETKDG, seed {seed})")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    else:
        AllChem.UFFOptimizeMolecule(mol, maxIters=2000)
    atoms = Atoms(
        numbers=[a.GetAtomicNum() for a in mol.GetAtoms()],
        positions=mol.GetConformer().GetPositions(),
    )
    atoms.info["charge"] = Chem.GetFormalCharge(mol)
    return atoms


def from_qm9(index: int):
    """The QM9 molecule at 0-based row ``index`` of ``qm9pack`` (see :func:`zoo.data.readers.qm9.read_qm9`).

    The row position is not the QM9 molecule number, which has gaps; that is recorded in
    ``info["qm9_id"]`` next to ``info["smiles"]``.
    """
    from zoo.data.readers.qm9 import read_qm9

    data = read_qm9(indices=[int(index)], properties=[], dtype="float64")[0]
    atoms = data.to_ase()
    atoms.info.update(smiles=data.smiles, qm9_id=int(data.qm9_id[0]), charge=0)
    return atoms


# --- GFN2-xTB ---------------------------------------------------------------------------------


def xtb_calculator(atoms):
    """A silent GFN2-xTB ASE calculator (eV, Å) for the charge in ``atoms.info["charge"]`` (default 0)."""
    from tblite.ase import TBLite

    return TBLite(method=XTB_METHOD, charge=float(atoms.info.get("charge", 0)), verbosity=0)


def xtb_optimize(atoms, fmax: float = 0.01, steps: int = 1000, optimizer: str = "bfgs"):
    """A copy of ``atoms`` relaxed with GFN2-xTB until the largest force is below ``fmax`` (eV/Å).

    Raises:
        RuntimeError: not converged within ``steps`` optimiser steps.
    """
    from ase.optimize import BFGS, FIRE

    optimizers = {"bfgs": BFGS, "fire": FIRE}
    if optimizer not in optimizers:
        raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {optimizer!r}")
    work = _plain_copy(atoms)
    work.calc = xtb_calculator(work)
    if not optimizers[optimizer](work, logfile=None).run(fmax=fmax, steps=steps):
        raise RuntimeError(f"GFN2-xTB {optimizer.upper()} did not reach fmax={fmax} eV/Å in {steps} steps")
    return _with_xtb_results(work)


def lowest_xtb_conformer(smiles: str, n_conformers: int, seed: int = 0, fmax: float = 0.01):
    """The lowest GFN2-xTB minimum among ``n_conformers`` RDKit conformers of ``smiles``.

    Conformer ``k`` is embedded with seed ``seed + k`` (:func:`from_smiles`) and relaxed with
    :func:`xtb_optimize`. One embedding can land in a higher conformer (malonaldehyde's open
    E,s-trans enol instead of its hydrogen-bonded Z-enol, say), so MD meant to sample around the
    global minimum starts from the best of several. ``info["conformer"]`` is the winning ``k``.

    Raises:
        ValueError: ``n_conformers`` < 1, or RDKit cannot parse or embed the SMILES.
        RuntimeError: no conformer's relaxation converged.
    """
    if n_conformers < 1:
        raise ValueError(f"n_conformers must be at least 1, got {n_conformers}")
    minima, failures = [], []
    for k in range(n_conformers):
        try:
            atoms = xtb_optimize(from_smiles(smiles, seed=seed + k), fmax=fmax)
        except RuntimeError as error:
            failures.append(f"conformer {k}: {error}")
            continue
        atoms.info["conformer"] = k
        minima.append(atoms)
    if not minima:
        raise RuntimeError(f"no GFN2-xTB relaxation of {smiles!r} converged: " + "; ".join(failures))
    return min(minima, key=lambda atoms: atoms.info["xtb_energy"])


def md_sample(
    atoms,
    n_frames: int,
    interval: int = 10,
    temperature_K: float = 500.0,
    timestep_fs: float = 0.5,
    thermostat: str = "langevin",
    equilibration_steps: int = 200,
    friction_per_fs: float = 0.01,
    seed: int = 0,
) -> list:
    """Frames of a GFN2-xTB NVT molecular dynamics run.

    Velocities start from a Maxwell–Boltzmann distribution at ``temperature_K`` (no net momentum
    or rotation); after ``equilibration_steps`` a frame is kept every ``interval`` steps.

    Args:
        thermostat: ``"langevin"`` (ASE Langevin, ``friction_per_fs``) or ``"nvt"`` (Bussi
            stochastic velocity rescaling, time constant ``1/friction_per_fs``). Both sample the
            canonical ensemble, unlike Berendsen; Bussi leaves the dynamics less perturbed.

    Returns:
        ``n_frames`` :class:`ase.Atoms` with ``info["xtb_energy"]`` (eV), ``arrays["xtb_forces"]``
        (eV/Å), ``info["md_step"]`` and ``info["sampler"]`` describing the run.
    """
    from ase import units
    from ase.constraints import FixCom
    from ase.md import Bussi, Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary, ZeroRotation

    if thermostat not in THERMOSTATS:
        raise ValueError(f"thermostat must be one of {THERMOSTATS}, got {thermostat!r}")
    if n_frames < 1 or interval < 1 or equilibration_steps < 0:
        raise ValueError("need n_frames >= 1, interval >= 1 and equilibration_steps >= 0")
    rng = np.random.default_rng(seed)
    work = _plain_copy(atoms)
    work.calc = xtb_calculator(work)
    MaxwellBoltzmannDistribution(work, temperature_K=temperature_K, rng=rng)
    Stationary(work)
    ZeroRotation(work)
    # ASE deprecates Langevin's own fixcm (wrong ensemble for small molecules) for this constraint
    work.set_constraint(FixCom())
    timestep = timestep_fs * units.fs
    if thermostat == "langevin":
        dynamics = Langevin(work, timestep, temperature_K=temperature_K,
                            friction=friction_per_fs / units.fs, fixcm=False, rng=rng, logfile=None)
    else:
        dynamics = Bussi(work, timestep, temperature_K=temperature_K,
                         taut=units.fs / friction_per_fs, rng=rng, logfile=None)
    sampler = f"xtb-md {thermostat} {temperature_K:g} K dt {timestep_fs:g} fs seed {seed}"
    dynamics.run(equilibration_steps)
    frames = []
    for _ in range(n_frames):
        dynamics.run(interval)
        frame = _with_xtb_results(work)
        frame.info.update(md_step=int(dynamics.nsteps), sampler=sampler)
        frames.append(frame)
    return frames


def displace(
    atoms,
    n: int,
    amplitude: float = 0.05,
    mode: str = "random",
    temperature_K: float = 300.0,
    seed: int = 0,
    min_frequency_cm: float = 50.0,
) -> list:
    """``n`` displaced copies of ``atoms``.

    Args:
        mode: ``"random"``: every Cartesian coordinate moves by Gaussian noise of standard
            deviation ``amplitude`` (Å). ``"normal_modes"``: classical Boltzmann sampling of the
            GFN2-xTB harmonic potential at ``temperature_K``, i.e. each normal coordinate gets
            variance kT/ω²; ``atoms`` should be an xTB minimum (see :func:`xtb_optimize`).
        min_frequency_cm: modes softer than this (or imaginary, away from a minimum) are treated
            as having this frequency, so that flat modes do not produce huge displacements.

    Returns:
        Structures without energies, with the ``info`` of ``atoms`` (``smiles``, ``qm9_id``, ...);
        ``info["sampler"]`` says how they were made, ``info["structure_kind"]`` is :data:`PERTURBED`.
    """
    from ase import units

    if mode not in DISPLACEMENT_MODES:
        raise ValueError(f"mode must be one of {DISPLACEMENT_MODES}, got {mode!r}")
    rng = np.random.default_rng(seed)
    base = _plain_copy(atoms)
    shape = (n, len(base), 3)
    if mode == "random":
        steps = rng.normal(scale=amplitude, size=shape)
        sampler = f"random {amplitude:g} Å seed {seed}"
    else:
        eigenvalues, modes = normal_modes(base)
        # hbar*omega (eV) = factor * sqrt(eigenvalue in eV/(Å² amu)); the floor is omega_min²
        factor = units._hbar * 1e10 / np.sqrt(units._e * units._amu)
        floor = (min_frequency_cm * units.invcm / factor) ** 2
        stiffness = np.maximum(eigenvalues, floor)  # eV / (Å² amu)
        sigma = np.sqrt(units.kB * temperature_K / stiffness)  # Å·sqrt(amu), per normal coordinate
        coordinates = rng.normal(size=(n, len(sigma))) * sigma
        mass_weighted = coordinates @ modes.T  # [n, 3N]
        steps = (mass_weighted / np.sqrt(np.repeat(base.get_masses(), 3))).reshape(shape)
        sampler = f"normal_modes {temperature_K:g} K seed {seed}"
    frames = []
    for i, step in enumerate(steps):
        frame = base.copy()
        frame.positions += step
        frame.info.update(sampler=sampler, displacement=i, structure_kind=PERTURBED)
        frames.append(frame)
    return frames


def sample_start(atoms, seed: int, optimize: bool = False, fmax: float = 0.01, md: dict | None = None,
                 displacement: dict | None = None, conformers: int = 1) -> list:
    """The structures made from one start structure (one task of ``zoo sample``).

    With ``conformers`` > 1 the start is replaced by the lowest GFN2-xTB minimum of that many
    conformers of its ``info["smiles"]`` (:func:`lowest_xtb_conformer`, seeds ``seed`` onwards;
    the start's other ``info`` is kept; already a minimum, it is not relaxed again). Otherwise the
    start is relaxed with GFN2-xTB when ``optimize`` (or for normal-mode displacements, which need
    a minimum). Then ``md`` (keyword arguments of :func:`md_sample`) gives MD frames,
    ``displacement`` (keyword arguments of :func:`displace`) displaced copies, and neither the
    (relaxed) start structure itself. ``seed`` drives the MD or the displacements.
    """
    if conformers > 1:
        if "smiles" not in atoms.info:
            raise ValueError("a conformer search needs the start's SMILES (info['smiles'])")
        minimum = lowest_xtb_conformer(atoms.info["smiles"], conformers, seed=seed, fmax=fmax)
        minimum.info = {**atoms.info, **minimum.info}
        atoms = minimum
    elif optimize or (displacement or {}).get("mode") == "normal_modes":
        atoms = xtb_optimize(atoms, fmax=fmax)
    if md is not None:
        return md_sample(atoms, seed=seed, **md)
    if displacement is not None:
        return displace(atoms, seed=seed, **displacement)
    return [atoms]


def normal_modes(atoms, delta: float = 0.005) -> tuple[np.ndarray, np.ndarray]:
    """Internal vibrational modes of ``atoms`` from a GFN2-xTB finite-difference Hessian.

    The mass-weighted Hessian (central differences of the forces, step ``delta`` Å, symmetrised)
    is diagonalised in the space orthogonal to rigid translations and rotations, so exactly
    3N−6 (3N−5 for a linear molecule) modes come back, whatever the residual forces.

    Returns:
        ``eigenvalues`` [m] in eV/(Å² amu) (ω² in ASE units; negative means imaginary) and the
        orthonormal mass-weighted mode vectors ``modes`` [3N, m].
    """
    work = _plain_copy(atoms)
    work.calc = xtb_calculator(work)
    n = len(work)
    reference = work.positions.copy()
    hessian = np.empty((3 * n, 3 * n))
    for k in range(3 * n):
        columns = []
        for sign in (1.0, -1.0):
            work.positions = reference
            work.positions[k // 3, k % 3] += sign * delta
            columns.append(work.get_forces().reshape(-1))
        hessian[:, k] = -(columns[0] - columns[1]) / (2 * delta)
    inv_sqrt_m = 1.0 / np.sqrt(np.repeat(work.get_masses(), 3))
    hessian = 0.5 * (hessian + hessian.T) * np.outer(inv_sqrt_m, inv_sqrt_m)
    internal = _internal_basis(reference, work.get_masses())
    eigenvalues, vectors = np.linalg.eigh(internal.T @ hessian @ internal)
    return eigenvalues, internal @ vectors


def _internal_basis(positions: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Orthonormal basis [3N, 3N−k] of mass-weighted displacements free of translation and rotation."""
    sqrt_m = np.sqrt(masses)[:, None]
    centred = positions - (masses[:, None] * positions).sum(0) / masses.sum()
    rigid = []
    for axis in np.eye(3):
        rigid.append((sqrt_m * axis).reshape(-1))  # translation
        rigid.append((sqrt_m * np.cross(axis, centred)).reshape(-1))  # rotation
    u, s, _ = np.linalg.svd(np.array(rigid).T, full_matrices=True)
    rank = int((s > 1e-6 * s.max()).sum())  # 5 for a linear molecule, 6 otherwise
    return u[:, rank:]


# --- helpers ----------------------------------------------------------------------------------


def _plain_copy(atoms):
    """A copy without calculator, constraints, momenta or stale xTB results; info (charge, smiles) stays."""
    copy = atoms.copy()
    copy.set_constraint()
    copy.info.pop("xtb_energy", None)
    for name in ("xtb_forces", "momenta"):
        copy.arrays.pop(name, None)
    return copy


def _with_xtb_results(work):
    """A calculator-free copy of ``work`` with its xTB energy and forces stored under xTB names."""
    frame = _plain_copy(work)
    frame.info["xtb_energy"] = float(work.get_potential_energy())
    frame.arrays["xtb_forces"] = work.get_forces().copy()
    return frame
