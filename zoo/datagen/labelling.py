"""DFT labels with PySCF: sharded, resumable, and never storing an unconverged SCF.

:func:`label` runs one closed-shell SCF (RKS or RHF, :class:`~zoo.qc.level.LevelOfTheory`) per
structure and stores what was asked for:

* energy, forces and dipole only: an **extended XYZ** file (eV, eV/Å, e·Å as ASE
  ``SinglePointCalculator`` results), readable by :func:`zoo.data.readers.ase_io.read_ase`;
* matrices (Fock, overlap, density matrix, orbital energies; Hartree, PySCF's AO order): the
  **HDF5 Hamiltonian format** of :mod:`zoo.data.readers.hamiltonian`, energy and forces included.

Every label records the level of theory (xc, basis, grid level, density fitting, PySCF version,
charge, spin) and the 0-based position of its structure in the input (``source_index``).
Each structure is one task (:mod:`zoo.datagen.jobs`: Dask workers, or this process); its labels are
appended atomically as soon as it comes back (a temporary copy moved over the file), so a killed
run loses at most the structures in progress, and a rerun skips every ``source_index`` already
stored. A finished run leaves the labels in source order. A structure whose SCF does not
converge (or that the workers could not compute) becomes one entry of the failure log
(:mod:`zoo.datagen.failures`), with the settings that failed it, and never a label.

For job arrays, ``shard=(i, n)`` labels structures i, i+n, i+2n, ... into its own file
(:func:`~zoo.datagen.files.shard_path`); :func:`merge` joins the shards in source order.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from zoo._files import exclusive_output
from zoo.data.readers.ase_io import write_extxyz
from zoo.data.readers.hamiltonian import HamiltonianMetadata, read_hamiltonian_metadata
from zoo.datagen import failures as failure_log
from zoo.datagen import jobs, label_files
from zoo.datagen.files import check_shard, read_structures, shard_path
from zoo.datagen.jobs import Workers, log
from zoo.datagen.label_task import SCFNotConverged, compute_labels, label_structure  # the first two: public here too
from zoo.qc.level import LevelOfTheory, pyscf_version

#: Properties stored per structure in extended XYZ (ASE calculator results, ASE units).
SCALAR_PROPERTIES = ("energy", "forces", "dipole")
#: Properties that need the HDF5 Hamiltonian format (Hartree, AO basis).
MATRIX_PROPERTIES = ("fock", "overlap", "density_matrix", "orbital_energies")
PROPERTIES = SCALAR_PROPERTIES + MATRIX_PROPERTIES
HDF5_SUFFIXES = (".h5", ".hdf5")


# --- many structures --------------------------------------------------------------------------


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
    workers: Workers = Workers(),
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
        failures: the failure log (default :func:`~zoo.datagen.failures.failures_path` of the output).
        max_cycle, conv_tol: SCF iteration limit and energy tolerance (Hartree).
        retry_failures: recompute structures that a previous run recorded as failed at the same
            settings (level of theory, PySCF version, ``max_cycle``, ``conv_tol``); failures
            recorded at other settings are recomputed anyway.
        progress: print progress with an ETA to stderr.
        reuse_density: start each SCF from the converged density of the structure its worker
            labelled just before, when both have the same atoms in the same order (frames of one
            trajectory: 13 -> 11 SCF cycles for malonaldehyde frames 10 fs apart); otherwise from
            PySCF's default guess. In this process (``Workers(0)``) that is the previous structure.
        workers: where the SCFs run (:class:`~zoo.datagen.jobs.Workers`): by default one local Dask
            worker per core; ``Workers(0)`` in this process.

    Returns:
        A summary: ``out``, ``failures`` (paths), ``labelled`` and ``failed`` (counts in this
        run), ``skipped`` (labelled or failed before), ``failed_before`` (of those, the failures
        at these settings, not retried), ``seconds``.

    Raises:
        ValueError: unknown or unstorable properties, a functional or basis PySCF does not know,
            a bad shard, an output made at another level of theory, or structures the level
            cannot describe (element not in the basis, odd electron count, charge mismatch) —
            checked before any SCF runs.
    """
    frames = read_structures(structures) if isinstance(structures, (str, os.PathLike)) else list(structures)
    shard = check_shard(shard)
    out = shard_path(out, shard)
    failures = Path(failures) if failures is not None else failure_log.failures_path(out)
    hdf5 = out.suffix.lower() in HDF5_SUFFIXES
    properties = _check_properties(properties, hdf5)
    level.check_available()
    metadata = HamiltonianMetadata.computed_at(level)
    settings = _failure_settings(level, max_cycle, conv_tol)

    with exclusive_output(out, "label file"):  # a second writer would interleave and lose labels
        label_files.h5_work_file(out).unlink(missing_ok=True)  # left by a run killed mid-append
        done = label_files.stored_indices(out, metadata, hdf5)
        mine = range(len(frames)) if shard is None else range(shard[0], len(frames), shard[1])
        failed_before = set() if retry_failures else _failed_indices(failures, settings) & (set(mine) - done)
        todo = [i for i in mine if i not in done and i not in failed_before]
        _check_structures(frames, todo, level)
        where = f"label {out.name}"
        if progress:
            log(f"[{where}] {level.describe()}: {len(todo)} to do, {len(mine) - len(todo) - len(failed_before)} "
                f"of {len(mine)} labelled before" + _failed_before_note(failed_before, failures))

        start, counts = time.perf_counter(), {"labelled": 0, "failed": 0}
        tracker = jobs.Progress(where, len(todo), enabled=progress)
        run = uuid.uuid4().hex  # the workers' previous densities are guesses only within this run
        tasks = [(frames[i], level, properties, max_cycle, conv_tol, run if reuse_density else None) for i in todo]
        for outcome in jobs.run(label_structure, tasks, workers, name="label"):
            index = todo[outcome.task]
            answer = outcome.value or {"failure": outcome.error, "cycles": -1}
            if "failure" in answer:
                failure_log.record(failures, {"index": int(index), **settings, "reason": answer["failure"],
                                              "cycles": int(answer["cycles"])})
                counts["failed"] += 1
            else:
                result = answer["result"]
                if hdf5:
                    label_files.append_h5(out, [label_files.h5_record(frames[index], result, properties)], [(index, result)], metadata)
                else:
                    write_extxyz(out, [label_files.labelled_atoms(frames[index], index, result, properties, metadata)],
                                 append=True)
                counts["labelled"] += 1
            tracker.update(f"source {index}", outcome.seconds, "failure" in answer)
        if counts["labelled"]:
            label_files.sort_by_source(out, hdf5)
        return {"out": out, "failures": failures, **counts, "skipped": len(mine) - len(todo),
                "failed_before": len(failed_before), "seconds": time.perf_counter() - start}


def merge(inputs: Sequence[str | os.PathLike], out: str | os.PathLike) -> int:
    """Join label files (e.g. the shards of one job array) into ``out``, sorted by ``source_index``.

    All inputs must share the format and the level of theory; a ``source_index`` present twice
    is an error. The failure logs next to the inputs are joined next to ``out``
    (:func:`zoo.datagen.failures.merge`). Returns the number of labels written.
    """
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
    metadata = read_hamiltonian_metadata(inputs[0]) if hdf5 else label_files.extxyz_metadata(inputs[0])
    for path in inputs[1:]:
        label_files.check_level(path, metadata, hdf5)
    if hdf5:
        entries = [entry for path in inputs for entry in label_files.read_h5_entries(path)]
    else:
        entries = [(frame.info["source_index"], frame) for path in inputs for frame in read_structures(path)]
    entries.sort(key=lambda entry: int(entry[0]))
    counts = Counter(int(index) for index, _ in entries)
    duplicates = sorted(i for i, count in counts.items() if count > 1)
    if duplicates:
        raise ValueError(f"source indices {duplicates[:10]} appear in more than one input")
    if hdf5:
        label_files.append_h5(out, [record for _, (record, _) in entries],
                   [(index, extra) for index, (_, extra) in entries], metadata)
    else:
        write_extxyz(out, [frame for _, frame in entries])
    failure_log.merge(inputs, out)
    return len(entries)


# --- checks -----------------------------------------------------------------------------------


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

    These depend only on the composition and the charge, so one structure per composition is
    checked. A broken geometry (overlapping atoms) fails only its own structure, as a recorded
    failure, wherever it is in the input.
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
            level.check_atoms(atoms.numbers)
        except ValueError as error:
            raise ValueError(f"structure {index} ({atoms.get_chemical_formula()}): {error}") from error


def _failure_settings(level: LevelOfTheory, max_cycle: int, conv_tol: float) -> dict:
    """The settings a failure is recorded with: another value of any of them may not fail."""
    return {"level": level.as_dict(), "pyscf_version": pyscf_version(), "max_cycle": int(max_cycle),
            "conv_tol": float(conv_tol)}


def _failed_indices(path: Path, settings: dict) -> set[int]:
    """Indices recorded as failed at exactly ``settings``.

    The recorded level is compared as a :class:`LevelOfTheory`, not as JSON, so that a log written
    before the record gained a field (with its default value) still matches.
    """
    level = LevelOfTheory.from_dict(settings["level"])

    def same_settings(entry: dict) -> bool:
        recorded = entry.get("level")
        try:
            if not isinstance(recorded, dict) or LevelOfTheory.from_dict(recorded) != level:
                return False
        except (TypeError, ValueError):  # not a level this zoo can describe: not these settings
            return False
        return all(entry.get(key) == value for key, value in settings.items() if key != "level")

    return {int(entry["index"]) for entry in failure_log.entries(path) if same_settings(entry)}


def _failed_before_note(failed_before: set, failures: Path) -> str:
    if not failed_before:
        return ""
    return (f"; {len(failed_before)} skipped as failed before at these settings (see {failures}; "
            "--retry-failures tries them again, as does a change of --max-cycle or --conv-tol)")
