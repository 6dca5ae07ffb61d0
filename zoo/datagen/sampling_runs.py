"""Runs of the samplers over many molecules: ``zoo sample`` and ``zoo sample-qm9``, resumable and sharded.

Each start structure (:func:`sample`) or QM9 molecule (:func:`sample_qm9`) is one task of
:mod:`zoo.datagen.jobs`, computed by :mod:`zoo.datagen.sampling`. The one writing process appends
each result atomically as it comes, in the order of the input whatever order the workers finish
in, so a killed run loses at most the tasks it was computing, a rerun of the same command does
only what is missing, and a parallel or resumed run writes the same file as one serial run.
Failures go to a JSON-lines log (:mod:`zoo.datagen.failures`) and are skipped by reruns at the same
settings. ``--shard i/n`` runs one part of the input into its own file; :func:`merge_structures`
joins the parts.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

from zoo._files import exclusive_output
from zoo.data.molgraph import graph_key
from zoo.data.readers.ase_io import write_extxyz
from zoo.datagen import failures as failure_log
from zoo.datagen import jobs, qm9, sampling
from zoo.datagen.files import check_shard, read_structures, shard_path
from zoo.datagen.jobs import Workers, log

#: ``info`` keys of the frames :func:`sample` writes: the position of their start structure in the
#: input, and the run's settings (a rerun with other settings must not append to the file).
START_INDEX, SAMPLE_SETTINGS = "start_index", "sample_settings"


def sample(
    starts,
    out: str | os.PathLike,
    seed: int = 0,
    optimize: bool = False,
    fmax: float = 0.01,
    md: dict | None = None,
    displacement: dict | None = None,
    conformers: int = 1,
    shard: tuple[int, int] | None = None,
    failures: str | os.PathLike | None = None,
    retry_failures: bool = False,
    progress: bool = True,
    workers: Workers = Workers(),
) -> dict:
    """Structures made from many start structures (:func:`~zoo.datagen.sampling.sample_start` each), resumable.

    Start structure ``k`` is sampled with seed ``seed + k``; its frames keep its ``info`` (SMILES,
    QM9 row, ...) and get ``info["start_index"] = k`` and ``info["sample_settings"]`` (the run's
    settings, one line of text). A start whose sampling fails (an xTB run that does not converge) becomes one
    line of the failure log (``start_index``, ``sample_settings``, ``reason``) and no frames.

    Args:
        starts: a sequence of :class:`ase.Atoms`, or a file :func:`ase.io.read` understands.
        out: the extended XYZ output. With ``shard`` it is :func:`~zoo.datagen.files.shard_path` of it.
        seed, optimize, fmax, md, displacement, conformers: as :func:`~zoo.datagen.sampling.sample_start`
            takes them.
        shard: ``(i, n)`` samples starts i, i+n, i+2n, ... (one job of an n-job array).
        failures: the failure log (default :func:`~zoo.datagen.failures.failures_path` of the output).
        retry_failures: sample again the starts recorded as failed at these settings.
        progress: print progress with an ETA to stderr.
        workers: where the starts are sampled (:class:`~zoo.datagen.jobs.Workers`).

    Returns:
        ``out``, ``failures`` (paths), the counts ``done``, ``failed`` and ``frames`` (this run),
        ``skipped`` (done or failed before) and ``seconds``.

    Raises:
        ValueError: a bad shard, or an ``out`` made with other settings.
    """
    frames = read_structures(starts) if isinstance(starts, (str, os.PathLike)) else list(starts)
    shard = check_shard(shard)
    out = shard_path(out, shard)
    failures = Path(failures) if failures is not None else failure_log.failures_path(out)
    # conformers only when searched: the settings of files made before the option stay the same
    searched = {"conformers": conformers} if conformers != 1 else {}
    settings = _settings_text(seed=seed, optimize=optimize, fmax=fmax, md=md, displacement=displacement, **searched)
    with exclusive_output(out, "structure file"):  # a second writer would interleave and duplicate starts
        done = _stored_values(out, START_INDEX, SAMPLE_SETTINGS, settings)
        mine = range(len(frames)) if shard is None else range(shard[0], len(frames), shard[1])
        failed_before = set() if retry_failures else {
            int(entry[START_INDEX]) for entry in failure_log.entries(failures)
            if entry.get(SAMPLE_SETTINGS) == settings}
        todo = [k for k in mine if k not in done and k not in failed_before]
        where = f"sample {out.name}"
        if progress:
            log(f"[{where}] {len(todo)} start structures to do, {len(mine) - len(todo)} of {len(mine)} done or "
                "failed before")
        start, counts = time.perf_counter(), {"done": 0, "failed": 0, "frames": 0}
        tracker = jobs.Progress(where, len(todo), enabled=progress)
        tasks = [(frames[k], seed + k, optimize, fmax, md, displacement, conformers) for k in todo]
        in_order = jobs.InOrder()
        for outcome in jobs.run(sample_start_task, tasks, workers, name="sample"):
            k = todo[outcome.task]
            answer = outcome.value or {"failure": outcome.error}
            if "failure" in answer:
                failure_log.record(failures, {START_INDEX: k, SAMPLE_SETTINGS: settings, "reason": answer["failure"]})
                counts["failed"] += 1
            else:
                counts["done"] += 1
            tracker.update(f"start {k}", outcome.seconds, "failure" in answer)
            for position, made in in_order.add(outcome.task, answer.get("frames")):
                if made:
                    for frame in made:
                        frame.info.update({START_INDEX: todo[position], SAMPLE_SETTINGS: settings})
                    write_extxyz(out, made, append=True)
                    counts["frames"] += len(made)
        if counts["frames"] and done and min(todo) < max(done):  # a rerun filled gaps: back to input order
            ordered = sorted(read_structures(out), key=lambda frame: int(frame.info[START_INDEX]))
            write_extxyz(out, ordered)
        return {"out": out, "failures": failures, **counts, "skipped": len(mine) - len(todo),
                "seconds": time.perf_counter() - start}


def sample_start_task(atoms, seed: int, optimize: bool, fmax: float, md: dict | None,
                      displacement: dict | None, conformers: int = 1) -> dict:
    """The task of one start structure, run by a worker: ``{"frames": [...]}`` or ``{"failure": why}``.

    An xTB run that does not converge is an answer, returned rather than raised: rerunning it
    elsewhere would fail again.
    """
    try:
        return {"frames": sampling.sample_start(atoms, seed, optimize, fmax, md, displacement, conformers)}
    except (RuntimeError, ValueError) as error:  # ASE's CalculationFailed is a RuntimeError
        return {"failure": f"{type(error).__name__}: {error}"}


def _settings_text(**settings) -> str:
    """``seed=0 optimize=True md=interval:10,n_frames:5`` (sorted keys): how a run sampled, as an
    extended XYZ value (no quotes, no braces) and a failure-log field."""
    def text(value):
        if isinstance(value, dict):
            return ",".join(f"{key}:{value[key]}" for key in sorted(value))
        return str(value)
    return " ".join(f"{key}={text(settings[key])}" for key in sorted(settings))


def _stored_values(path: Path, key: str, settings_key: str, settings: str) -> set[int]:
    """``info[key]`` of every frame in ``path``, after checking that the frames were made with ``settings``."""
    if not path.exists():
        return set()
    frames = read_structures(path)
    made_with = {frame.info.get(settings_key) for frame in frames}
    if made_with != {settings}:
        other = next(iter(made_with - {settings}))
        raise ValueError(f"{path} was made with other settings ({settings_key} {other!r}, not {settings!r}); "
                         "write to another file, or rerun with those settings to resume it")
    return {int(frame.info[key]) for frame in frames}


def sample_qm9(
    rows,
    out: str | os.PathLike | None,
    reference_out: str | os.PathLike,
    seed: int = 0,
    fmax: float = 0.01,
    steps: int = 1000,
    start: str = "rdkit",
    max_heavy_atoms: int | None = None,
    min_heavy_atoms: int | None = None,
    exclude_smiles: Sequence[str] = (),
    shard: tuple[int, int] | None = None,
    failures: str | os.PathLike | None = None,
    retry_failures: bool = False,
    progress: bool = True,
    workers: Workers = Workers(),
) -> dict:
    """Cheap structures and reference geometries of QM9 molecules (:func:`~zoo.datagen.qm9.qm9_molecule`), resumable.

    Each molecule is one task (:mod:`zoo.datagen.jobs`). Both frames of a molecule are appended
    (atomically, reference first) to ``reference_out`` and ``out``, in the order of ``rows``
    whatever order the workers finish in, so a parallel or resumed run writes the same files as
    one serial run (a label's ``source_index`` is a position in these files). A molecule that
    fails becomes one JSON line in ``failures`` (``qm9_row``, ``qm9_id``, ``smiles``, ``reason``,
    ``sampler``) and appears in neither file. A rerun skips the rows already in ``out`` or
    recorded as failed with the same settings.

    Args:
        rows: 0-based qm9pack rows (a row given twice is done once).
        out, reference_out: extended XYZ files of the xTB minima and of QM9's geometries. With
            ``shard`` they are :func:`~zoo.datagen.files.shard_path` of these names. ``out=None``
            writes QM9's geometries alone (no xTB), e.g. to label them (Hamiltonian data).
        seed, fmax, steps: RDKit embedding seed, xTB force threshold (eV/Å) and step limit.
        start: where the xTB relaxation starts, an RDKit conformer or QM9's geometry
            (:data:`~zoo.datagen.qm9.STARTS`).
        max_heavy_atoms, min_heavy_atoms: skip (without recording a failure) molecules with more
            (fewer) heavy atoms.
        exclude_smiles: skip (without recording a failure) these molecules, whatever their row:
            compared as RDKit canonical SMILES without stereochemistry, so ``"O/C=C\\C=O"`` also
            leaves out ``OC=CC=O`` (molecules kept out of a pretraining set for a benchmark).
        shard: ``(i, n)`` does rows[i], rows[i + n], ... (one job of an n-job array); join the
            shards with :func:`merge_structures`.
        failures: the failure log (default :func:`~zoo.datagen.failures.failures_path` of ``out``).
        retry_failures: recompute rows recorded as failed (otherwise skipped).
        progress: print progress with an ETA to stderr.
        workers: where the molecules are computed (:class:`~zoo.datagen.jobs.Workers`).

    Returns:
        ``out``, ``reference_out``, ``failures`` (paths) and the counts ``done``, ``failed``,
        ``filtered`` (this run), ``skipped`` (done or failed before), and ``seconds``.

    Raises:
        ValueError: a bad shard, or ``out`` made with another seed or fmax.
        IndexError: a row beyond the end of QM9.
    """
    from zoo.data.readers.qm9 import read_qm9

    rows = list(dict.fromkeys(int(row) for row in rows))  # each row once, in the order given
    shard = check_shard(shard)
    if shard is not None:
        rows = rows[shard[0]::shard[1]]
    reference_out = shard_path(reference_out, shard)
    out = None if out is None else shard_path(out, shard)
    failures = Path(failures) if failures is not None else failure_log.failures_path(out or reference_out)
    sampler = qm9.qm9_sampler(seed, fmax, start) if out is not None else "QM9 geometry"
    with contextlib.ExitStack() as writers:  # one run per output: a second would interleave and duplicate rows
        for path in (reference_out, out):
            if path is not None:
                writers.enter_context(exclusive_output(path, "structure file"))
        referenced = _stored_rows(reference_out, None)
        done = referenced if out is None else _stored_rows(out, sampler)
        failed_before = set() if retry_failures else _failed_rows(failures, sampler)
        todo = [row for row in rows if row not in done and row not in failed_before]
        molecules = read_qm9(indices=todo, properties=[], dtype="float64") if todo else []
        excluded = {graph_key(smiles) for smiles in exclude_smiles}
        kept = [(row, data) for row, data in zip(todo, molecules)
                if _heavy_atoms_within(data, min_heavy_atoms, max_heavy_atoms)
                and not (excluded and graph_key(data.smiles) in excluded)]
        where = f"sample-qm9 {(out or reference_out).name}"
        if progress:
            log(f"[{where}] {sampler}: {len(todo)} to do ({len(todo) - len(kept)} filtered by size or SMILES), "
                f"{len(rows) - len(todo)} of {len(rows)} done or failed before")

        began, counts = time.perf_counter(), {"done": 0, "failed": 0, "filtered": len(todo) - len(kept)}
        tracker = jobs.Progress(where, len(kept), enabled=progress)
        tasks = [(data, row, seed, fmax, steps, out is not None, start) for row, data in kept]
        in_order = jobs.InOrder()
        for outcome in jobs.run(sample_qm9_row, tasks, workers, name="sample-qm9"):
            row, data = kept[outcome.task]
            answer = outcome.value or {"failure": outcome.error}
            if "failure" in answer:
                failure_log.record(failures, {"qm9_row": row, "qm9_id": int(data.qm9_id[0]), "smiles": data.smiles,
                                             "reason": answer["failure"], "sampler": sampler})
                counts["failed"] += 1
                status = f"failed: {answer['failure']}"
            else:
                counts["done"] += 1
                cheap = answer.get("cheap")
                status = "QM9 geometry" if cheap is None else f"E_xTB = {cheap.info['xtb_energy']:.4f} eV"
            tracker.update(f"row {row} {data.smiles}: {status}", outcome.seconds, "failure" in answer)
            # in row order, whatever order the workers finish in: positions in these files are the
            # source_index of labels made from them, so they must not depend on the run
            for position, frames in in_order.add(outcome.task, None if "failure" in answer else answer):
                if frames is not None:
                    if kept[position][0] not in referenced:
                        write_extxyz(reference_out, [frames["reference"]], append=True)
                    if frames.get("cheap") is not None:
                        write_extxyz(out, [frames["cheap"]], append=True)
        return {"out": out, "reference_out": reference_out, "failures": failures, **counts,
                "skipped": len(rows) - len(todo), "seconds": time.perf_counter() - began}


def sample_qm9_row(data, row: int, seed: int, fmax: float, steps: int, with_xtb: bool, start: str = "rdkit") -> dict:
    """The task of one QM9 molecule, run by a worker: ``{"reference", "cheap"}`` frames or ``{"failure": why}``.

    A molecule :func:`~zoo.datagen.qm9.qm9_molecule` rejects is an answer, returned rather than raised: rerunning
    it elsewhere would reject it again. Without ``with_xtb`` only QM9's geometry is made.
    """
    try:
        if not with_xtb:
            return {"reference": qm9.qm9_reference(data, row)}
        cheap, reference = qm9.qm9_molecule(data, row, seed=seed, fmax=fmax, steps=steps, start=start)
    except ValueError as error:
        return {"failure": str(error)}
    return {"reference": reference, "cheap": cheap}


def _heavy_atoms_within(data, minimum: int | None, maximum: int | None) -> bool:
    heavy = int((data.z > 1).sum())
    return (minimum is None or heavy >= minimum) and (maximum is None or heavy <= maximum)


def merge_structures(inputs, out: str | os.PathLike, key: str = "qm9_row") -> int:
    """Join structure files (the shards of :func:`sample` or :func:`sample_qm9`) into a new ``out``, sorted by ``info[key]``.

    The frames of one ``key`` value (the structures sampled from one start) keep their order. The
    failure logs next to the inputs are joined next to ``out`` (:func:`zoo.datagen.failures.merge`).
    Returns the number of structures written.

    Raises:
        FileNotFoundError: an input is missing.
        FileExistsError: ``out`` exists.
        ValueError: a structure lacks ``info[key]``, or a value is in more than one input.
    """
    inputs, out = [Path(p) for p in inputs], Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; merging writes a new file")
    files = {path: read_structures(path) for path in inputs}
    missing = sum(key not in frame.info for frames in files.values() for frame in frames)
    if missing:
        raise ValueError(f"{missing} structures have no info[{key!r}] to sort by")
    holders = collections.defaultdict(set)
    for path, frames in files.items():
        for frame in frames:
            holders[int(frame.info[key])].add(path)
    duplicates = sorted(value for value, paths in holders.items() if len(paths) > 1)
    if duplicates:
        raise ValueError(f"{key} {duplicates[:10]} appear in more than one of {[str(p) for p in inputs]}")
    frames = sorted((frame for frames in files.values() for frame in frames), key=lambda frame: int(frame.info[key]))
    write_extxyz(out, frames)
    failure_log.merge(inputs, out)
    return len(frames)


def _stored_rows(path: Path, sampler: str | None) -> set[int]:
    """``qm9_row`` of every frame in ``path``, after checking (unless None) that it was made by ``sampler``."""
    if not path.exists():
        return set()
    frames = read_structures(path)
    if sampler is not None and frames[0].info.get("sampler") != sampler:
        raise ValueError(f"{path} was made with other settings ({frames[0].info.get('sampler')!r}, not "
                         f"{sampler!r}); write to another file or rerun with those settings")
    return {int(frame.info["qm9_row"]) for frame in frames}


def _failed_rows(path: Path, sampler: str) -> set[int]:
    """Rows recorded as failed with ``sampler``."""
    return {int(entry["qm9_row"]) for entry in failure_log.entries(path) if entry.get("sampler") == sampler}
