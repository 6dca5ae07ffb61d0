"""``zoo sample``, ``zoo sample-qm9`` and ``zoo label``: the data-generation commands.

All return an exit status instead of raising on bad input, so that a user sees one clear line
(``zoo sample: error: ...``) rather than a traceback; argparse handles ``--help`` and usage errors.
Their per-structure work runs as tasks on Dask workers (:mod:`zoo.datagen.jobs`); the options of
:func:`_add_worker_options` say where.

Long because the three commands share their worker options, notes, errors and argument parsers,
which stay next to the commands that use them.
"""

from __future__ import annotations

import argparse
import sys

from zoo._files import OutputBusyError
from zoo._signals import stops_cleanly
from zoo.datagen.labelling import PROPERTIES

#: What the commands report as one line: bad input, a busy output, an unreachable Dask scheduler.
_USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IndexError, OutputBusyError, ConnectionError)

WORKER_NOTES = """
A rerun with the same arguments resumes: what the output holds (or the failures file records as
failed at the same settings) is skipped; Ctrl-C, SIGTERM (a batch system's time limit) and SIGHUP
stop a run cleanly, keeping what it wrote. Tasks run on local Dask worker processes, one per core
(--workers N; --workers 0 runs them in this process, one after the other), or on a running Dask
cluster (--scheduler ADDRESS, --dask-config FILE, --slurm-jobs N). This process alone writes the
output, as results come back.
"""

SAMPLE_EXAMPLES = """examples:
  zoo sample --smiles CCO --md --temperature 500 --frames 1000 --interval 10 --seed 0 -o ethanol.extxyz
  zoo sample --xyz water.xyz --displace normal_modes -n 50 --temperature 300 -o water_nm.extxyz
  zoo sample --qm9-index 1 --optimize -o qm9_1.extxyz
  zoo sample --smiles CCO --optimize -o ethanol_opt.extxyz
  zoo sample --smiles 'O/C=C\\C=O' --conformers 10 --md --frames 200 -o malonaldehyde.extxyz
  zoo sample --xyz qm9_xtb.extxyz --all-frames --displace random -n 1 --amplitude 0.05 -o qm9_perturbed.extxyz
  zoo sample --smiles-file drugs.smi --conformers 3 --optimize -o drugs_xtb.extxyz

  zoo sample --xyz qm9_xtb.extxyz --all-frames --md -n 5 --temperature 800 --shard 0/4 -o qm9_md.extxyz
  zoo sample --merge qm9_md.shard-*-of-4.extxyz -o qm9_md.extxyz

With several start structures (--all-frames, --smiles-file), each is one task (with its conformer
search); its structures are appended as it ends, in the order of the start structures.
""" + WORKER_NOTES

SAMPLE_QM9_EXAMPLES = """examples:
  zoo sample-qm9 --rows 0:2000 --seed 0 -o qm9_xtb.extxyz --reference-out qm9_reference.extxyz
  zoo sample-qm9 --rows 0:2000 --exclude-rows 9:2000:10 --max-heavy-atoms 7 --shard 0/4 \
      -o qm9_xtb.extxyz --reference-out qm9_reference.extxyz
  zoo sample-qm9 --merge qm9_xtb.shard-*-of-4.extxyz -o qm9_xtb.extxyz
""" + WORKER_NOTES

LABEL_EXAMPLES = """examples:
  zoo label ethanol.extxyz --xc pbe --basis def2-svp --grid 3 --properties energy,forces \
      -o ethanol_pbe.extxyz --shard 0/4
  zoo label --merge ethanol_pbe.shard-*-of-4.extxyz -o ethanol_pbe.extxyz
  zoo label water.extxyz --xc b3lyp5 --basis def2-svp -o water_b3lyp5.h5   # Fock, overlap, density, ...
  zoo label water.extxyz --method rhf --basis sto-3g --workers 0 -o water_hf.extxyz   # in this process
  zoo label qm9.extxyz --xc b3lyp --basis '6-31g*' --dask-config slurm.yaml --slurm-jobs 32 -o qm9.extxyz
""" + WORKER_NOTES


#: What a stopped run (Ctrl-C, SIGTERM, SIGHUP) says after "stopped (SIGTERM); ".
_STOPPED = "the output keeps what was done, and the same command goes on from there"


def sample_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo sample",
        description="Make structures to label: a start geometry (SMILES, file or QM9), optionally "
                    "relaxed with GFN2-xTB, then GFN2-xTB MD frames or displacements. Writes extended "
                    "XYZ; xTB results are kept as xtb_energy/xtb_forces (eV, eV/Å), never as labels.",
        epilog=SAMPLE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    start = parser.add_argument_group("start structure (one of)").add_mutually_exclusive_group(required=True)
    start.add_argument("--smiles", help="SMILES; RDKit adds hydrogens, embeds (ETKDG, --seed) and MMFF-relaxes")
    start.add_argument("--smiles-file", metavar="FILE",
                       help="many molecules, one 'SMILES [name]' per line ('#' comments): molecule k is start "
                            "structure k (seed + k), its name kept in the output's info")
    start.add_argument("--xyz", metavar="FILE", help="any file ase.io.read understands (xyz, extxyz, ...)")
    start.add_argument("--qm9-index", type=int, metavar="N",
                       help="0-based row of QM9 as shipped by qm9pack (not the gdb number, which has gaps)")
    start.add_argument("--merge", nargs="+", metavar="FILE",
                       help="instead of sampling: join files written with --shard into OUTPUT, in start order")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--frame", type=int, default=0, help="which structure of --xyz to start from (default 0)")
    which.add_argument("--all-frames", action="store_true",
                       help="start from every structure of --xyz in turn (structure k uses seed + k; its info, "
                            "e.g. smiles and qm9_id, is kept) and write all results to one file")
    parser.add_argument("--optimize", action="store_true", help="relax the start structure with GFN2-xTB first")
    parser.add_argument("--fmax", type=float, default=0.01, help="optimiser force threshold, eV/Å (default 0.01)")
    parser.add_argument("--conformers", type=int, default=1, metavar="N",
                        help="with --smiles or --smiles-file: relax N RDKit conformers of each molecule (seeds "
                             "s..s+N-1 from its seed s) with GFN2-xTB and start from the lowest minimum (default 1)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--md", action="store_true", help="sample frames of GFN2-xTB NVT molecular dynamics")
    how.add_argument("--displace", choices=("random", "normal_modes"),
                     help="random Gaussian displacements (--amplitude) or Boltzmann sampling of the xTB "
                          "normal modes at --temperature (implies --optimize)")
    parser.add_argument("-n", "--frames", dest="n", type=int, default=100,
                        help="number of structures to make, per start structure (default 100)")
    parser.add_argument("--temperature", type=float, default=500.0, help="K (default 500)")
    parser.add_argument("--timestep", type=float, default=0.5, help="MD time step, fs (default 0.5)")
    parser.add_argument("--interval", type=int, default=10, help="MD steps between kept frames (default 10)")
    parser.add_argument("--equilibrate", type=int, default=200, help="MD steps before the first frame (default 200)")
    parser.add_argument("--thermostat", choices=("langevin", "nvt"), default="langevin",
                        help="langevin, or nvt (Bussi velocity rescaling) (default langevin)")
    parser.add_argument("--friction", type=float, default=0.01,
                        help="thermostat coupling, 1/fs (Langevin friction; Bussi uses 1/friction fs) (default 0.01)")
    parser.add_argument("--amplitude", type=float, default=0.05,
                        help="standard deviation of random displacements, Å (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: embedding, velocities, displacements")
    parser.add_argument("-o", "--output", required=True,
                        help="output extended XYZ file (appended atomically, one start structure at a time)")
    parser.add_argument("--shard", metavar="I/N",
                        help="with --all-frames or --smiles-file: sample start structures I, I+N, I+2N, ... "
                             "into OUTPUT with .shard-I-of-N before the suffix")
    parser.add_argument("--retry-failures", action="store_true",
                        help="sample again the start structures recorded as failed")
    _add_worker_options(parser)
    return parser


@stops_cleanly("zoo sample", _STOPPED)
def sample_main(argv: list[str] | None = None) -> int:
    """Entry point of ``zoo sample``; returns the exit status."""
    from zoo.datagen import failures, jobs, sampling, sampling_runs
    from zoo.datagen.files import read_structures

    parser = sample_parser()
    args = parser.parse_args(argv)
    if args.all_frames and args.xyz is None:
        parser.error("--all-frames takes the structures of --xyz FILE")
    if args.conformers != 1 and args.smiles is None and args.smiles_file is None:
        parser.error("--conformers N takes the molecules of --smiles or --smiles-file")
    if args.shard is not None and not args.all_frames and args.smiles_file is None:
        parser.error("--shard I/N splits the start structures of --all-frames or --smiles-file")
    try:
        if args.merge is not None:
            count = sampling_runs.merge_structures(args.merge, args.output, key=sampling_runs.START_INDEX)
            jobs.log(f"zoo sample: merged {count} structures from {len(args.merge)} files into {args.output}")
            return 0
        if args.smiles is not None:
            starts = [sampling.from_smiles(args.smiles, seed=args.seed)]
        elif args.smiles_file is not None:
            starts = sampling.read_smiles_file(args.smiles_file, seed=args.seed)
        elif args.xyz is not None:
            starts = read_structures(args.xyz, index=":" if args.all_frames else args.frame)
        else:
            starts = [sampling.from_qm9(args.qm9_index)]
        with _workers(args) as workers:
            # one start structure is one task: nothing to distribute, so no cluster to start
            summary = sampling_runs.sample(
                starts, args.output, seed=args.seed, optimize=args.optimize, fmax=args.fmax, md=_md_settings(args),
                displacement=_displacement_settings(args), conformers=args.conformers,
                shard=None if args.shard is None else _parse_shard(args.shard),
                retry_failures=args.retry_failures, progress=len(starts) > 1,
                workers=workers if len(starts) > 1 else jobs.Workers(0))
    except (*_USER_ERRORS, RuntimeError) as error:
        print(f"zoo sample: error: {error}", file=sys.stderr)
        return 1
    if summary["failed"] and not summary["done"] and not summary["skipped"]:
        reason = "" if len(starts) > 1 else f": {failures.entries(summary['failures'])[-1]['reason']}"
        print(f"zoo sample: error: no start structure could be sampled{reason} (see {summary['failures']})",
              file=sys.stderr)
        return 1
    note = f", {summary['failed']} failed (see {summary['failures']})" if summary["failed"] else ""
    jobs.log(f"zoo sample: wrote {summary['frames']} structures of {summary['done']} start structures to "
             f"{summary['out']}{note}" + (f"; {summary['skipped']} done before" if summary["skipped"] else ""))
    return 0


def _md_settings(args) -> dict | None:
    """Keyword arguments of :func:`zoo.datagen.sampling.md_sample` (None without --md)."""
    if not args.md:
        return None
    return {"n_frames": args.n, "interval": args.interval, "temperature_K": args.temperature,
            "timestep_fs": args.timestep, "thermostat": args.thermostat, "equilibration_steps": args.equilibrate,
            "friction_per_fs": args.friction}


def _displacement_settings(args) -> dict | None:
    """Keyword arguments of :func:`zoo.datagen.sampling.displace` (None without --displace)."""
    if not args.displace:
        return None
    return {"n": args.n, "amplitude": args.amplitude, "mode": args.displace, "temperature_K": args.temperature}


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("where the tasks run (dask.distributed)")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="local worker processes (default: one per core, divided by --threads-per-worker, "
                            "and at most one per task); 0 runs every task in this process, one after the other")
    group.add_argument("--threads-per-worker", type=int, default=1, metavar="T",
                       help="OpenMP threads of each local worker, i.e. of one PySCF or xTB calculation (default 1)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="use the workers of a running Dask cluster, e.g. tcp://10.0.0.5:8786")
    group.add_argument("--dask-config", metavar="FILE",
                       help="YAML file of Dask settings for this run, read as data (never executed): e.g. "
                            "scheduler-address, distributed.scheduler.allowed-failures, jobqueue.slurm")
    group.add_argument("--slurm-jobs", type=int, metavar="N",
                       help="submit N SLURM jobs of Dask workers (dask-jobqueue, set up by the jobqueue.slurm "
                            "settings of --dask-config); they are cancelled when the run ends")


def _workers(args):
    """The :class:`zoo.datagen.jobs.Workers` of the command line, with its Dask settings in force."""
    from zoo.datagen import jobs

    return jobs.configured_workers(n=args.workers, threads=args.threads_per_worker, scheduler=args.scheduler,
                                   dask_config=args.dask_config, slurm_jobs=args.slurm_jobs)


def sample_qm9_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo sample-qm9",
        description="Cheap structures of QM9 molecules for multi-task training on heterogeneous data: per "
                    "qm9pack row, the SMILES's RDKit conformer (ETKDG, --seed, MMFF) relaxed with GFN2-xTB "
                    "(-o), and QM9's own B3LYP/6-31G(2df,p) geometry in the same atom order (--reference-out). "
                    "Each frame's info holds smiles (atom-mapped: its atom order), qm9_id, qm9_row and "
                    "structure_kind. Charged molecules, QM9 geometries whose bonds differ from their SMILES and "
                    "xTB optimisations that fail or change the bonds go to a JSON-lines failures file, never "
                    "into the outputs.",
        epilog=SAMPLE_QM9_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rows", metavar="START:STOP[:STEP][,...]",
                        help="0-based qm9pack rows (not the gdb numbers, which have gaps), e.g. 0:2000, 9:2000:10 "
                             "or 0:10,50")
    parser.add_argument("--exclude-rows", metavar="START:STOP[:STEP][,...]",
                        help="leave out these rows (e.g. the test molecules), same syntax")
    parser.add_argument("-o", "--output", help="extended XYZ file of the xTB minima (appended); required unless "
                                               "--reference-only or --merge")
    parser.add_argument("--reference-only", action="store_true",
                        help="write QM9's geometries (--reference-out) alone, without xTB (e.g. to label them)")
    parser.add_argument("--reference-out", metavar="FILE", help="extended XYZ file of QM9's geometries (appended)")
    parser.add_argument("--merge", nargs="+", metavar="FILE",
                        help="instead: join these shard files into OUTPUT, sorted by qm9_row")
    parser.add_argument("--seed", type=int, default=0, help="RDKit embedding seed (default 0)")
    parser.add_argument("--fmax", type=float, default=0.01, help="xTB optimiser force threshold, eV/Å (default 0.01)")
    parser.add_argument("--steps", type=int, default=1000, help="xTB optimiser step limit (default 1000)")
    parser.add_argument("--start", choices=("rdkit", "qm9"), default="rdkit",
                        help="where the xTB relaxation starts: an RDKit conformer of the SMILES (default), or "
                             "QM9's own geometry, so that the cheap structure shares QM9's conformer")
    parser.add_argument("--max-heavy-atoms", type=int, default=None, metavar="N",
                        help="skip molecules with more than N heavy atoms (not recorded as failures)")
    parser.add_argument("--min-heavy-atoms", type=int, default=None, metavar="N",
                        help="skip molecules with fewer than N heavy atoms (not recorded as failures)")
    parser.add_argument("--exclude-smiles", default="", metavar="SMILES[,...]", help="leave out these molecules "
                        "wherever they are in --rows (as graphs: canonical SMILES without stereochemistry)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="do rows I, I+N, I+2N, ... of --rows into files with .shard-I-of-N before the suffix")
    parser.add_argument("--failures", default=None,
                        help="JSON-lines file of failed molecules (default: OUTPUT stem + .failures.jsonl)")
    parser.add_argument("--retry-failures", action="store_true", help="recompute rows recorded as failed")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    _add_worker_options(parser)
    return parser


@stops_cleanly("zoo sample-qm9", _STOPPED)
def sample_qm9_main(argv: list[str] | None = None) -> int:
    """Entry point of ``zoo sample-qm9``; returns the exit status (failed molecules are recorded, not fatal)."""
    from zoo.datagen import sampling_runs
    from zoo.datagen.jobs import log

    parser = sample_qm9_parser()
    args = parser.parse_args(argv)
    if args.merge is None and (args.rows is None or args.reference_out is None):
        parser.error("--rows and --reference-out are required (unless --merge)")
    if args.output is None and not args.reference_only:
        parser.error("-o/--output is required (unless --reference-only)")
    if args.merge is not None and args.output is None:
        parser.error("--merge needs -o/--output")
    try:
        if args.merge is not None:
            count = sampling_runs.merge_structures(args.merge, args.output)
            log(f"zoo sample-qm9: merged {count} structures from {len(args.merge)} files into {args.output}")
            return 0
        rows = _parse_rows(args.rows)
        if args.exclude_rows is not None:
            excluded = set(_parse_rows(args.exclude_rows, "--exclude-rows"))
            rows = [row for row in rows if row not in excluded]
        with _workers(args) as workers:
            summary = sampling_runs.sample_qm9(
                rows, None if args.reference_only else args.output, args.reference_out, seed=args.seed,
                fmax=args.fmax, steps=args.steps, start=args.start, max_heavy_atoms=args.max_heavy_atoms,
                min_heavy_atoms=args.min_heavy_atoms,
                exclude_smiles=[smiles for smiles in args.exclude_smiles.split(",") if smiles],
                shard=None if args.shard is None else _parse_shard(args.shard),
                failures=args.failures, retry_failures=args.retry_failures, progress=not args.quiet,
                workers=workers)
    except _USER_ERRORS as error:
        print(f"zoo sample-qm9: error: {error}", file=sys.stderr)
        return 1
    note = f" (see {summary['failures']})" if summary["failed"] else ""
    log(f"zoo sample-qm9: {summary['done']} molecules done, {summary['failed']} failed{note}, "
                 f"{summary['filtered']} filtered, {summary['skipped']} done before; outputs {summary['out']} "
                 f"and {summary['reference_out']}")
    return 0


def label_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zoo label",
        description="Label structures with PySCF (closed-shell RKS or RHF). Energy/forces/dipole go to "
                    "extended XYZ (eV, eV/Å, e·Å); Fock, overlap, density matrix and orbital energies "
                    "(Hartree, PySCF AO order) to the zoo HDF5 Hamiltonian format (-o *.h5). Each label "
                    "records the level of theory, the PySCF version and its source index; SCF failures "
                    "go to a JSON-lines file and never into the labels.",
        epilog=LABEL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="structure file (anything ase.io.read reads); with --merge, the label files")
    parser.add_argument("-o", "--output", required=True,
                        help="output file: .h5/.hdf5 for the Hamiltonian format, else extended XYZ")
    parser.add_argument("--merge", action="store_true",
                        help="join label files (e.g. shards) into OUTPUT, sorted by source index")
    level = parser.add_argument_group("level of theory")
    level.add_argument("--method", choices=("rks", "rhf"), default="rks", help="default rks")
    level.add_argument("--xc", default=None,
                       help="PySCF functional for rks (default b3lyp5; note 'b3lyp' is the VWN-RPA variant)")
    level.add_argument("--basis", default="def2-svp", help="default def2-svp")
    level.add_argument("--grid", type=int, default=3, help="PySCF grids.level, 0-9 (default 3)")
    level.add_argument("--density-fitting", action="store_true", help="RI-J/K with PySCF's default auxiliary basis")
    level.add_argument("--charge", type=int, default=0, help="total charge (default 0)")
    parser.add_argument("--properties", default=None,
                        help=f"comma-separated, from {','.join(PROPERTIES)} (default: all the output "
                             "format stores; dipole only in extended XYZ)")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="label structures I, I+N, I+2N, ... into OUTPUT with .shard-I-of-N before the suffix")
    parser.add_argument("--failures", default=None,
                        help="JSON-lines file of SCF failures (default: OUTPUT stem + .failures.jsonl)")
    parser.add_argument("--max-cycle", type=int, default=100, help="SCF iteration limit (default 100)")
    parser.add_argument("--conv-tol", type=float, default=1e-10, help="SCF energy tolerance, Hartree (default 1e-10)")
    parser.add_argument("--retry-failures", action="store_true",
                        help="recompute structures recorded as failed by an earlier run at the same settings "
                             "(failures at another --max-cycle, --conv-tol, level or PySCF version are always retried)")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    _add_worker_options(parser)
    return parser


@stops_cleanly("zoo label", _STOPPED)
def label_main(argv: list[str] | None = None) -> int:
    """Entry point of ``zoo label``; returns the exit status (SCF failures are recorded, not fatal)."""
    from zoo.datagen import labelling
    from zoo.qc.level import LevelOfTheory

    parser = label_parser()
    args = parser.parse_args(argv)
    try:
        if args.merge:
            count = labelling.merge(args.inputs, args.output)
            print(f"zoo label: merged {count} labels from {len(args.inputs)} files into {args.output}",
                  file=sys.stderr)
            return 0
        if len(args.inputs) != 1:
            parser.error("label one structure file at a time (several files only with --merge)")
        level = LevelOfTheory(
            method=args.method,
            xc=(args.xc or "b3lyp5") if args.method == "rks" else args.xc,
            basis=args.basis, grid_level=args.grid, density_fitting=args.density_fitting, charge=args.charge)
        with _workers(args) as workers:
            summary = labelling.label(
                args.inputs[0], level, args.output,
                properties=None if args.properties is None else [p.strip() for p in args.properties.split(",")],
                shard=None if args.shard is None else _parse_shard(args.shard),
                failures=args.failures, max_cycle=args.max_cycle, conv_tol=args.conv_tol,
                retry_failures=args.retry_failures, progress=not args.quiet, workers=workers)
    except _USER_ERRORS as error:
        print(f"zoo label: error: {error}", file=sys.stderr)
        return 1
    note = f" (see {summary['failures']})" if summary["failed"] else ""
    before = summary["skipped"] - summary["failed_before"]
    skipped = (f", {summary['failed_before']} skipped as failed before at these settings (see {summary['failures']}; "
               "--retry-failures tries them again)") if summary["failed_before"] else ""
    print(f"zoo label: {summary['labelled']} labelled, {summary['failed']} failed{note}, {before} labelled "
          f"before{skipped}; output {summary['out']}", file=sys.stderr)
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes I/N, e.g. 0/4, got {text!r}") from None
    return i, n


def _parse_rows(text: str, option: str = "--rows") -> list[int]:
    """``"0:6:2,10"`` -> ``[0, 2, 4, 10]``: items START:STOP[:STEP] (Python's range) or N, sorted, once each."""
    rows = set()
    try:
        for part in text.split(","):
            numbers = [int(n) for n in part.split(":")]
            if len(numbers) > 3:
                raise ValueError
            rows.update(range(*numbers) if len(numbers) > 1 else numbers)
    except ValueError:
        raise ValueError(f"{option} takes START:STOP[:STEP] or N items separated by commas, e.g. 0:2000 or "
                         f"9:2000:10, got {text!r}") from None
    if not rows or min(rows) < 0:
        raise ValueError(f"{option} {text!r} names no rows, or a negative one")
    return sorted(rows)
