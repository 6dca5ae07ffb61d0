"""``zoo sample`` and ``zoo label``: the data-generation commands.

Both return an exit status instead of raising on bad input, so that a user sees one clear line
(``zoo sample: error: ...``) rather than a traceback; argparse handles ``--help`` and usage errors.
"""

from __future__ import annotations

import argparse
import sys

from zoo.qc.labelling import PROPERTIES

SAMPLE_EXAMPLES = """examples:
  zoo sample --smiles CCO --md --temperature 500 --frames 1000 --interval 10 --seed 0 -o ethanol.extxyz
  zoo sample --xyz water.xyz --displace normal_modes -n 50 --temperature 300 -o water_nm.extxyz
  zoo sample --qm9-index 1 --optimize -o qm9_1.extxyz
  zoo sample --smiles CCO --optimize -o ethanol_opt.extxyz
"""

LABEL_EXAMPLES = """examples:
  zoo label ethanol.extxyz --xc pbe --basis def2-svp --grid 3 --properties energy,forces \
      -o ethanol_pbe.extxyz --shard 0/4
  zoo label --merge ethanol_pbe.shard-*-of-4.extxyz -o ethanol_pbe.extxyz
  zoo label water.extxyz --xc b3lyp5 --basis def2-svp -o water_b3lyp5.h5   # Fock, overlap, density, ...

A rerun with the same arguments resumes: structures already in the output (or recorded as
failed in the failures file) are skipped. PySCF uses OMP_NUM_THREADS threads.
"""


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
    start.add_argument("--xyz", metavar="FILE", help="any file ase.io.read understands (xyz, extxyz, ...)")
    start.add_argument("--qm9-index", type=int, metavar="N",
                       help="0-based row of QM9 as shipped by qm9pack (not the gdb number, which has gaps)")
    parser.add_argument("--frame", type=int, default=0, help="which structure of --xyz to start from (default 0)")
    parser.add_argument("--optimize", action="store_true", help="relax the start structure with GFN2-xTB first")
    parser.add_argument("--fmax", type=float, default=0.01, help="optimiser force threshold, eV/Å (default 0.01)")
    how = parser.add_mutually_exclusive_group()
    how.add_argument("--md", action="store_true", help="sample frames of GFN2-xTB NVT molecular dynamics")
    how.add_argument("--displace", choices=("random", "normal_modes"),
                     help="random Gaussian displacements (--amplitude) or Boltzmann sampling of the xTB "
                          "normal modes at --temperature (implies --optimize)")
    parser.add_argument("-n", "--frames", dest="n", type=int, default=100,
                        help="number of structures to make (default 100)")
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
    parser.add_argument("-o", "--output", required=True, help="output extended XYZ file (written atomically)")
    return parser


def sample_main(argv: list[str] | None = None) -> int:
    """Entry point of ``zoo sample``; returns the exit status."""
    from zoo.qc import sampling

    args = sample_parser().parse_args(argv)
    try:
        if args.smiles is not None:
            atoms = sampling.from_smiles(args.smiles, seed=args.seed)
        elif args.xyz is not None:
            atoms = sampling.read_structures(args.xyz, index=args.frame)[0]
        else:
            atoms = sampling.from_qm9(args.qm9_index)
        if args.optimize or args.displace == "normal_modes":
            atoms = sampling.xtb_optimize(atoms, fmax=args.fmax)
            sampling.log(f"zoo sample: GFN2-xTB minimum, E = {atoms.info['xtb_energy']:.6f} eV")
        if args.md:
            frames = sampling.md_sample(
                atoms, n_frames=args.n, interval=args.interval, temperature_K=args.temperature,
                timestep_fs=args.timestep, thermostat=args.thermostat, equilibration_steps=args.equilibrate,
                friction_per_fs=args.friction, seed=args.seed)
        elif args.displace:
            frames = sampling.displace(atoms, args.n, amplitude=args.amplitude, mode=args.displace,
                                       temperature_K=args.temperature, seed=args.seed)
        else:
            frames = [atoms]
    except (ValueError, FileNotFoundError, IndexError, RuntimeError) as error:
        print(f"zoo sample: error: {error}", file=sys.stderr)
        return 1
    path = sampling.write_extxyz(args.output, frames)
    sampling.log(f"zoo sample: wrote {len(frames)} structures to {path}")
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
                        help="recompute structures recorded as failed by an earlier run")
    parser.add_argument("--quiet", action="store_true", help="no progress messages")
    return parser


def label_main(argv: list[str] | None = None) -> int:
    """Entry point of ``zoo label``; returns the exit status (SCF failures are recorded, not fatal)."""
    from zoo.qc import labelling
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
        summary = labelling.label(
            args.inputs[0], level, args.output,
            properties=None if args.properties is None else [p.strip() for p in args.properties.split(",")],
            shard=None if args.shard is None else _parse_shard(args.shard),
            failures=args.failures, max_cycle=args.max_cycle, conv_tol=args.conv_tol,
            retry_failures=args.retry_failures, progress=not args.quiet)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"zoo label: error: {error}", file=sys.stderr)
        return 1
    note = f" (see {summary['failures']})" if summary["failed"] else ""
    print(f"zoo label: {summary['labelled']} labelled, {summary['failed']} failed{note}, "
          f"{summary['skipped']} done before; output {summary['out']}", file=sys.stderr)
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes I/N, e.g. 0/4, got {text!r}") from None
    return i, n
