"""DFT labels with PySCF: sharded, resumable, and never storing an unconverged SCF.

:func:`label` runs one closed-shell SCF (RKS or RHF, :class:`~zoo.qc.level.LevelOfTheory`) per
structure and stores what was asked for:

* energy, forces and dipole only: an **extended XYZ** file (eV, eV/Å, e·Å as ASE
  ``SinglePointCalculator`` results), readable by :func:`zoo.data.readers.ase_io.read_ase`;
* matrices (Fock, overlap, density matrix, orbital energies; Hartree, PySCF's AO order): the
  **HDF5 Hamiltonian format** of :mod:`zoo.data.readers.hamiltonian`, energy and forces included.

Every label records the level of theory (xc, basis, grid level, density fitting, PySCF version,
charge, spin) and the 0-based position of its structure in the input (``source_index``).
Labels are appended atomically after each structure (a temporary copy moved over the file), so
a killed job loses at most the structure in progress, and a rerun skips every ``source_index``
already stored. A structure whose SCF does not converge becomes one JSON line in the failures
file and never a label.

For job arrays, ``shard=(i, n)`` labels structures i, i+n, i+2n, ... into its own file
(:func:`shard_path`); :func:`merge` joins the shards in source order.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from zoo._files import exclusive_output
from zoo.data.readers.ase_io import write_extxyz
from zoo.data.units import BOHR, HARTREE
from zoo.qc.level import LevelOfTheory, pyscf_version
from zoo.qc.sampling import log, read_structures

#: Properties stored per structure in extended XYZ (ASE calculator results, ASE units).
SCALAR_PROPERTIES = ("energy", "forces", "dipole")
#: Properties that need the HDF5 Hamiltonian format (Hartree, AO basis).
MATRIX_PROPERTIES = ("fock", "overlap", "density_matrix", "orbital_energies")
PROPERTIES = SCALAR_PROPERTIES + MATRIX_PROPERTIES
HDF5_SUFFIXES = (".h5", ".hdf5")
#: Name of the HDF5 dataset (zoo.data.keys) for each matrix property.
_H5_NAMES = {"fock": "hamiltonian", "overlap": "overlap", "density_matrix": "density_matrix",
             "orbital_energies": "orbital_energies", "energy": "energy", "forces": "forces"}


class SCFNotConverged(RuntimeError):
    """The SCF stopped before convergence; ``cycles`` is the number of iterations it ran."""

    def __init__(self, message: str, cycles: int):
        super().__init__(message)
        self.cycles = cycles


# --- one structure ----------------------------------------------------------------------------


def compute_labels(atoms, level: LevelOfTheory, properties: Sequence[str],
                   max_cycle: int = 100, conv_tol: float = 1e-10, guess: np.ndarray | None = None) -> dict:
    """PySCF labels of one structure, in zoo's units.

    ``guess`` is an initial density matrix (PySCF AO order), e.g. the converged one of the
    previous frame of an MD trajectory: fewer SCF cycles, the same converged result. One of
    the wrong shape is ignored (PySCF's default guess is used).

    Returns:
        A dict with the requested ``properties``: ``energy`` (eV), ``forces`` (eV/Å, minus the
        analytic gradient, with the grid response for DFT), ``dipole`` (e·Å), ``fock``, ``overlap``, ``density_matrix``
        ([n_ao, n_ao], Hartree, the Fock matrix built on the converged density) and
        ``orbital_energies`` ([n_ao], Hartree); plus ``cycles``, the SCF iterations, and
        ``converged_density``, the density matrix (a guess for the next structure).

    Raises:
        SCFNotConverged: the SCF did not converge within ``max_cycle`` iterations.
        ValueError: the structure cannot be built (see :meth:`LevelOfTheory.build_mole`).
    """
    mol = level.build_mole(atoms.numbers, atoms.positions)
    mf = level.build_scf(mol, conv_tol=conv_tol, max_cycle=max_cycle)
    if guess is not None and np.shape(guess) != (mol.nao, mol.nao):
        guess = None
    mf.kernel(dm0=guess)
    cycles = int(getattr(mf, "cycles", -1))
    if not mf.converged:
        raise SCFNotConverged(f"SCF not converged in {max_cycle} cycles (E = {mf.e_tot:.8f} Eh)", cycles)
    result = {"cycles": cycles}
    if "energy" in properties:
        result["energy"] = float(mf.e_tot) * HARTREE
    if "forces" in properties:
        gradient = mf.nuc_grad_method()
        if hasattr(gradient, "grid_response"):
            # the exact derivative of the DFT energy (the grid moves with the atoms): a conservative
            # force field cannot fit forces that are not -dE/dR (off by ~3 meV/Å for ethanol)
            gradient.grid_response = True
        result["forces"] = -gradient.kernel() * (HARTREE / BOHR)
    if "dipole" in properties:
        result["dipole"] = np.asarray(mf.dip_moment(unit="AU", verbose=0)) * BOHR
    density = mf.make_rdm1()
    result["converged_density"] = density
    if "fock" in properties:
        # rebuilt on the final density without DIIS/damping: exactly H[D], the SCT target
        result["fock"] = mf.get_fock(dm=density)
    if "overlap" in properties:
        result["overlap"] = mf.get_ovlp()
    if "density_matrix" in properties:
        result["density_matrix"] = density
    if "orbital_energies" in properties:
        result["orbital_energies"] = np.asarray(mf.mo_energy)
    return result


def label_metadata(level: LevelOfTheory):
    """The level of theory as :class:`~zoo.data.readers.hamiltonian.HamiltonianMetadata` (PySCF AO order).

    Hartree–Fock is recorded as ``xc="hf"`` with ``grid_level=-1`` (no grid).
    """
    from zoo.data.readers.hamiltonian import HamiltonianMetadata

    return HamiltonianMetadata(
        xc=level.xc if level.is_dft else "hf",
        basis=level.basis,
        grid_level=int(level.grid_level) if level.is_dft else -1,
        density_fitting=bool(level.density_fitting),
        pyscf_version=pyscf_version(),
        charge=int(level.charge),
        spin=int(level.spin),
    )


# --- many structures --------------------------------------------------------------------------


def shard_path(path: str | os.PathLike, shard: tuple[int, int] | None) -> Path:
    """``out.extxyz`` -> ``out.shard-2-of-8.extxyz`` (unchanged without sharding)."""
    path = Path(path)
    if shard is None:
        return path
    i, n = shard
    return path.with_name(f"{path.stem}.shard-{i}-of-{n}{path.suffix}")


def failures_path(out: str | os.PathLike) -> Path:
    """Default failures file next to an output file: ``out.failures.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.failures.jsonl")


def label(
    structures,
    level: LevelOfTheory,
    out: str | os.PathLike,
    properties: Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    failures: str | os.PathLike | None = None,
    max_cycle: int = 100,
    conv_tol: float = 1e-10,
    retry_failures: bool = False,
    progress: bool = True,
    reuse_density: bool = True,
) -> dict:
    """Label ``structures`` with PySCF at ``level`` into ``out``, resuming where a previous run stopped.

    Args:
        structures: a sequence of :class:`ase.Atoms`, or a file :func:`ase.io.read` understands.
            The position of a structure in it is its ``source_index``.
        level: method, functional, basis, grid, density fitting and charge.
        out: the output file; ``.h5``/``.hdf5`` writes the HDF5 Hamiltonian format, anything else
            extended XYZ. With ``shard`` the shard's file is :func:`shard_path` of it.
        properties: names from :data:`PROPERTIES`; default everything the format stores
            (extended XYZ: energy, forces, dipole; HDF5: energy, forces and the matrices).
        shard: ``(i, n)`` labels structures i, i+n, i+2n, ... (one job of an n-job array).
        failures: JSON-lines file for SCF failures (default :func:`failures_path` of the output).
        max_cycle, conv_tol: SCF iteration limit and energy tolerance (Hartree).
        retry_failures: recompute structures that a previous run recorded as failed
            (otherwise they are skipped: at unchanged settings they fail again).
        progress: print progress with an ETA to stderr.
        reuse_density: start each SCF from the converged density of the structure labelled just
            before it when both have the same atoms in the same order (frames of one trajectory:
            13 -> 11 SCF cycles for malonaldehyde frames 10 fs apart); otherwise from PySCF's
            default guess.

    Returns:
        A summary: ``out``, ``failures`` (paths), ``labelled`` and ``failed`` (counts in this
        run), ``skipped`` (already done before), ``seconds``.

    Raises:
        ValueError: unknown or unstorable properties, a bad shard, an output made at another
            level of theory, or a structure the level cannot describe (element not in the
            basis, odd electron count, charge mismatch) — checked before any SCF runs.
    """
    frames = read_structures(structures) if isinstance(structures, (str, os.PathLike)) else list(structures)
    out = shard_path(out, _check_shard(shard))
    failures = Path(failures) if failures is not None else failures_path(out)
    hdf5 = out.suffix.lower() in HDF5_SUFFIXES
    properties = _check_properties(properties, hdf5)
    metadata = label_metadata(level)

    with exclusive_output(out, "label file"):  # a second writer would interleave and lose labels
        done = _stored_indices(out, metadata, hdf5)
        failed_before = set() if retry_failures else _failed_indices(failures, level)
        mine = range(len(frames)) if shard is None else range(shard[0], len(frames), shard[1])
        todo = [i for i in mine if i not in done and i not in failed_before]
        _check_structures(frames, todo, level)
        where = f"label {out.name}"
        if progress:
            log(f"[{where}] {level.describe()}: {len(todo)} to do, {len(mine) - len(todo)} of "
                f"{len(mine)} already labelled or failed")

        start, counts = time.perf_counter(), {"labelled": 0, "failed": 0}
        previous = (None, None)  # atomic numbers and converged density of the last structure labelled
        for n_done, index in enumerate(todo, 1):
            atoms = frames[index]
            tick = time.perf_counter()
            same_atoms = reuse_density and previous[0] is not None and np.array_equal(previous[0], atoms.numbers)
            try:
                result = compute_labels(atoms, level, properties, max_cycle=max_cycle, conv_tol=conv_tol,
                                        guess=previous[1] if same_atoms else None)
            except SCFNotConverged as error:
                _record_failure(failures, index, level, str(error), error.cycles, max_cycle)
                counts["failed"] += 1
            except (ValueError, np.linalg.LinAlgError) as error:  # overlapping atoms, singular overlap
                _record_failure(failures, index, level, f"{type(error).__name__}: {error}", 0, max_cycle)
                counts["failed"] += 1
            else:
                previous = (atoms.numbers.copy(), result["converged_density"])
                if hdf5:
                    _append_h5(out, [_h5_record(atoms, result, properties)], [(index, result)], metadata)
                else:
                    write_extxyz(out, [_labelled_atoms(atoms, index, result, properties, metadata)], append=True)
                counts["labelled"] += 1
            if progress:
                elapsed = time.perf_counter() - start
                eta = elapsed / n_done * (len(todo) - n_done)
                log(f"[{where}] {n_done}/{len(todo)} (source {index}, {time.perf_counter() - tick:.1f} s; "
                    f"{counts['failed']} failed) ETA {_duration(eta)}")
        return {"out": out, "failures": failures, **counts, "skipped": len(mine) - len(todo),
                "seconds": time.perf_counter() - start}


def merge(inputs: Sequence[str | os.PathLike], out: str | os.PathLike) -> int:
    """Join label files (e.g. the shards of one job array) into ``out``, sorted by ``source_index``.

    All inputs must share the format and the level of theory; a ``source_index`` present twice
    is an error. Failures files (:func:`failures_path`) next to the inputs are concatenated next
    to ``out``. Returns the number of labels written.
    """
    from zoo.data.readers.hamiltonian import read_hamiltonian_metadata

    inputs = [Path(p) for p in inputs]
    out = Path(out)
    if not inputs:
        raise ValueError("merge needs at least one input file")
    formats = {p.suffix.lower() in HDF5_SUFFIXES for p in [*inputs, out]}
    if len(formats) != 1:
        raise ValueError("merge inputs and output must all be HDF5 (.h5) or all extended XYZ")
    missing = [str(p) for p in inputs if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no label files at {missing}")
    if out.exists():
        raise FileExistsError(f"{out} exists; merge writes a new file")
    hdf5 = formats.pop()
    metadata = read_hamiltonian_metadata(inputs[0]) if hdf5 else _extxyz_metadata(inputs[0])
    for path in inputs[1:]:
        _check_level(path, metadata, hdf5)
    if hdf5:
        entries = [entry for path in inputs for entry in _read_h5_entries(path)]
    else:
        entries = [(frame.info["source_index"], frame) for path in inputs for frame in read_structures(path)]
    entries.sort(key=lambda entry: int(entry[0]))
    counts = Counter(int(index) for index, _ in entries)
    duplicates = sorted(i for i, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"source indices {duplicates[:10]} appear in more than one input")
    if hdf5:
        _append_h5(out, [record for _, (record, _) in entries],
                   [(index, extra) for index, (_, extra) in entries], metadata)
    else:
        write_extxyz(out, [frame for _, frame in entries])
    failure_lines = [line for path in inputs if failures_path(path).is_file()
                     for line in failures_path(path).read_text().splitlines() if line.strip()]
    if failure_lines:
        failures_path(out).write_text("\n".join(failure_lines) + "\n")
    return len(entries)


# --- checks -----------------------------------------------------------------------------------


def _check_shard(shard):
    if shard is None:
        return None
    i, n = (int(v) for v in shard)
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    return i, n


def _check_properties(properties, hdf5: bool) -> tuple[str, ...]:
    if properties is None:
        return ("energy", "forces", *MATRIX_PROPERTIES) if hdf5 else SCALAR_PROPERTIES
    properties = tuple("fock" if p == "hamiltonian" else p for p in properties)
    unknown = [p for p in properties if p not in PROPERTIES]
    if unknown or not properties:
        raise ValueError(f"unknown properties {unknown}; choose from {list(PROPERTIES)}")
    if hdf5 and "dipole" in properties:
        raise ValueError("the HDF5 Hamiltonian format stores no dipole; label dipoles into an extended "
                         "XYZ file (-o name.extxyz) in a separate run")
    matrices = [p for p in properties if p in MATRIX_PROPERTIES]
    if matrices and not hdf5:
        raise ValueError(f"{matrices} are AO matrices, stored only in the HDF5 Hamiltonian format; "
                         "name the output *.h5")
    return properties


def _check_structures(frames, todo, level: LevelOfTheory) -> None:
    """Fail before any SCF on what no SCF can fix: elements, electron count, charge.

    One structure per composition is built (PySCF's checks depend only on the elements and the
    charge, besides overlapping atoms, which only fail that structure).
    """
    seen = set()
    for index in todo:
        atoms = frames[index]
        charge = atoms.info.get("charge")
        if charge is not None and int(charge) != level.charge:
            raise ValueError(f"structure {index} has charge {charge} but the level of theory has "
                             f"charge {level.charge}; pass the matching charge")
        composition = tuple(sorted(atoms.numbers))
        if composition in seen:
            continue
        seen.add(composition)
        try:
            level.build_mole(atoms.numbers, atoms.positions)
        except ValueError as error:
            raise ValueError(f"structure {index} ({atoms.get_chemical_formula()}): {error}") from error


# --- extended XYZ -----------------------------------------------------------------------------


def _labelled_atoms(atoms, index: int, result: dict, properties, metadata):
    """A copy of ``atoms`` carrying the labels as calculator results and the level in ``info``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    frame = atoms.copy()  # keeps the input's info and arrays (e.g. xtb_energy for Δ-learning)
    frame.info.update(_metadata_info(metadata), source_index=int(index), scf_cycles=result["cycles"])
    frame.calc = SinglePointCalculator(frame, **{p: result[p] for p in properties})
    return frame


def _metadata_info(metadata) -> dict:
    """The fields of the level recorded per frame (AO conventions do not apply to extended XYZ)."""
    from dataclasses import asdict

    fields = asdict(metadata)
    fields.pop("ao_convention")
    fields.pop("units")
    return fields


def _extxyz_metadata(path: Path):
    """The level of theory recorded in the first frame of a label file."""
    from dataclasses import fields

    from zoo.data.readers.hamiltonian import HamiltonianMetadata

    frame = read_structures(path, index=0)[0]
    names = [f.name for f in fields(HamiltonianMetadata) if f.name not in ("ao_convention", "units")]
    missing = [name for name in names if name not in frame.info]
    if missing:
        raise ValueError(f"{path} is not a zoo label file: its first frame lacks {missing}")
    values = {name: frame.info[name] for name in names}
    values = {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}
    values["pyscf_version"] = str(values["pyscf_version"])  # extxyz would read "2.3" as a float
    return HamiltonianMetadata(**values)


# --- HDF5 -------------------------------------------------------------------------------------
# The Hamiltonian format has no field for the source index (or the dipole), so it is kept as an
# attribute of each structure's group, which read_hamiltonian_h5 ignores.


def _h5_record(atoms, result: dict, properties) -> dict:
    record = {"atomic_numbers": atoms.numbers, "positions": atoms.positions}
    record.update({_H5_NAMES[p]: result[p] for p in properties})
    return record


def _append_h5(path: Path, records: list, extras: list, metadata) -> None:
    """Append records atomically, tagging each group with ``source_index`` and ``scf_cycles``.

    write_hamiltonian_h5 is atomic on its own, but tagging its groups afterwards would not be, so
    both happen on a private copy that then replaces ``path``.
    """
    import h5py

    from zoo.data.readers.hamiltonian import GROUP, write_hamiltonian_h5

    path.parent.mkdir(parents=True, exist_ok=True)
    work = path.with_name(f".{path.name}.labelling")
    try:
        if path.exists():
            shutil.copyfile(path, work)
        total = write_hamiltonian_h5(work, records, metadata, append=True)
        with h5py.File(work, "a") as handle:
            group = handle[GROUP]
            for number, (index, result) in enumerate(extras, start=total - len(records)):
                group[f"{number:06d}"].attrs.update(source_index=int(index), scf_cycles=int(result["cycles"]))
        with open(work, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(work, path)
    finally:
        work.unlink(missing_ok=True)


def _read_h5_entries(path: Path) -> list:
    """``(source_index, (record, {"cycles": ...}))`` for every structure of a label file."""
    import h5py

    from zoo.data.readers.hamiltonian import DATASETS, GROUP

    entries = []
    with h5py.File(path, "r") as handle:
        for name in sorted(handle[GROUP], key=int):
            group = handle[GROUP][name]
            record = {key: group[key][()] for key in DATASETS if key in group}
            entries.append((_source_index(group, path), (record, {"cycles": int(group.attrs.get("scf_cycles", -1))})))
    return entries


def _source_index(group, path) -> int:
    if "source_index" not in group.attrs:
        raise ValueError(f"{path}:{group.name} has no source_index attribute; it was not written by zoo label")
    return int(group.attrs["source_index"])


# --- resuming ---------------------------------------------------------------------------------


def _stored_indices(out: Path, metadata, hdf5: bool) -> set[int]:
    """Source indices already labelled in ``out``, after checking it was made at the same level."""
    if not out.exists():
        return set()
    _check_level(out, metadata, hdf5)
    if hdf5:
        import h5py

        from zoo.data.readers.hamiltonian import GROUP

        with h5py.File(out, "r") as handle:
            groups = handle[GROUP].values() if GROUP in handle else []
            return {_source_index(group, out) for group in groups}
    return {int(frame.info["source_index"]) for frame in read_structures(out)}


def _check_level(path: Path, metadata, hdf5: bool) -> None:
    """Labels at two levels of theory (PySCF version included) never share a file."""
    from zoo.data.readers.hamiltonian import read_hamiltonian_metadata

    stored = read_hamiltonian_metadata(path) if hdf5 else _extxyz_metadata(path)
    try:
        stored.check_compatible(metadata, ignore=())
    except ValueError as error:
        raise ValueError(f"{path} holds labels at another level of theory: {error}") from error


def _record_failure(path: Path, index: int, level: LevelOfTheory, reason: str, cycles: int, max_cycle: int):
    """One JSON line per failure, appended and flushed at once."""
    line = json.dumps({"index": int(index), "level": level.as_dict(), "pyscf_version": pyscf_version(),
                       "reason": reason, "cycles": int(cycles), "max_cycle": int(max_cycle)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as stream:
        stream.write(line + "\n")
        stream.flush()
        os.fsync(stream.fileno())


def _failed_indices(path: Path, level: LevelOfTheory) -> set[int]:
    """Indices recorded as failed at ``level``; a torn last line (killed mid-write) is ignored."""
    if not path.is_file():
        return set()
    indices = set()
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if entry.get("level") == level.as_dict():
            indices.add(int(entry["index"]))
    return indices


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"
