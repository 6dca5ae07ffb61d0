"""Consistency study: multi-task learning alone against multi-task + physical consistency.

Ren et al. (NeurIPS 2024) train one model on heterogeneous data, cheap (here GFN2-xTB) equilibrium
structures for many molecules and accurate (B3LYP/6-31G*) energies and forces for some, and ask
whether the consistency losses let the accurate energies improve the structures the model
generates. Four variants of the recipe ``consistency_qm9``, identical but for:

- ``multitask``: energy + structure denoising only (optimality and score weights 0, no forces);
- ``multitask_forces``: + the force loss from the second stage on;
- ``consistency``: + optimality and score consistency from the second stage on, no forces;
- ``consistency_forces``: the recipe as written (consistency and forces in stage 2).

Each (variant, seed) is one process (``study.py run``) that fits through the zoo CLI and then
generates structures for every test molecule (QM9's own B3LYP/6-31G(2df,p) geometries of
molecules never trained on) with every generation mode, one-shot denoising of an RDKit conformer,
DDIM sampling from noise and refinement of an MMFF94 structure (DDIM from it noised; a model
trained on small noise times only, ``max_noise_time`` < 1, is studied in the modes that start
from a structure), ``--k`` structures each, and measures:

- RMSD to the QM9 geometry after optimal superposition over the molecule's graph symmetries
  (:func:`zoo.metrics.best_rmsd`): the mean over the k structures, and the best of k;
- the energy gap E(generated) - E(QM9 geometry) under the run's own energy model (eV), and both
  energies per molecule for the parity plot.

The cheap-structure baseline is the same RMSD for the GFN2-xTB minima of the test molecules
(``qm9_test_xtb.extxyz``), which start from an RDKit conformer as the training structures do;
beside it, k RDKit ETKDG conformers per molecule, the one-shot mode's input before any model.
Since the conformer an RDKit embedding lands in is often not QM9's, the report also gives every
metric on the "same-conformer" test molecules, whose xTB minimum lies within 0.25 Å of QM9's:
there the remaining error is the level of theory, which is what the accurate energies can fix.

Runs go ``--jobs`` at a time (one GPU takes many of these small models at once). Records are
appended to ``results/consistency_study.json`` as runs finish, so a study resumes;
``study.py report`` writes the Markdown table, the paired comparison and the figures.

    python benchmarks/consistency/study.py --epochs 40 --consistency-start 24 --seeds 0 1 2 --jobs 12 \\
        --accelerator gpu
    python benchmarks/consistency/study.py report
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
DATA = ROOT / "data" / "consistency"
RECIPE = "consistency_qm9"  # the default recipe (packaged, zoo.recipes, or a file)
#: fit overrides of each variant on top of the recipe
VARIANTS = {
    "multitask": {"optimality_weight": "0", "score_weight": "0", "force_start_epoch": "1000000"},
    "multitask_forces": {"optimality_weight": "0", "score_weight": "0"},
    "consistency": {"force_start_epoch": "1000000"},
    "consistency_forces": {},
}
MODES = ("one_shot", "ddim", "refine")
#: a test molecule is "same-conformer" when its xTB minimum is this close to QM9's geometry (Å)
SAME_CONFORMER_RMSD = 0.25


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default=RECIPE, help="the recipe every run fits (a packaged name or a file)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="max_epochs (default: the recipe's)")
    parser.add_argument("--consistency-start", type=int, default=None,
                        help="first epoch of stage 2 (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--train", default=str(DATA / "qm9_train.extxyz"))
    parser.add_argument("--test", default=str(DATA / "qm9_test.extxyz"))
    parser.add_argument("--test-xtb", default=str(DATA / "qm9_test_xtb.extxyz"))
    parser.add_argument("--n-test", type=int, default=None, help="first N test molecules only (smoke tests)")
    parser.add_argument("--k", type=int, default=5, help="structures per molecule and mode")
    parser.add_argument("--ddim-steps", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--fit-args", default="",
                        help="more `zoo fit` arguments for every run, one quoted string (smoke tests)")
    parser.add_argument("--out", default=str(RESULTS / "consistency_study.json"))
    parser.add_argument("--dry-run", action="store_true")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="one run (used by the study itself)")
    run.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    run.add_argument("--seed", type=int, required=True)
    sub.add_parser("report", help="tables, paired comparison and figures from the records")
    sub.add_parser("baseline", help="the cheap-structure baseline alone (xTB minimum against QM9 geometry)")
    published = sub.add_parser("published", help="a trained model (zoo.load name or folder) on the test molecules, "
                                                 "beside the baselines: RMSD, best of k and validity")
    published.add_argument("--model", default="consistency-qm9-b3lyp-631gs",
                           help="a zoo.load name or folder, or a training run (its folder or a checkpoint file)")
    published.add_argument("--start", type=float, default=None,
                           help="starting time of one-shot and refinement, a fraction of T (default: the model's)")
    rewrite = sub.add_parser("published-report", help="rewrite the Markdown pages of `published` records (JSON files)")
    rewrite.add_argument("records", nargs="+")
    denoise = sub.add_parser("denoise", help="how much noise a model's one-step denoiser removes, against doing nothing")
    denoise.add_argument("--model", default="consistency-qm9-b3lyp-631gs",
                         help="a zoo.load name or folder, or a training run (its folder or a checkpoint file)")
    denoise.add_argument("--structures", type=int, default=256, help="first N structures of --train of --kind")
    denoise.add_argument("--kind", default="xtb_optimized", choices=["xtb_optimized", "qm9_reference"],
                         help="the structures to noise: the xTB minima (a generator's training structures), or QM9's "
                              "geometries (e.g. of the test molecules: --train data/consistency/qm9_test.extxyz)")
    denoise.add_argument("--times", type=int, nargs="+", default=[5, 20, 50, 100, 200, 300, 500],
                         help="noise times (of the model's T); a refiner learned those up to its max_noise_time only")
    gap = sub.add_parser("dft-gap", help="DFT energy of refinement's starts and refined structures above QM9's geometry")
    gap.add_argument("--model", default="consistency-qm9-b3lyp-631gs-v2",
                     help="a zoo.load name or folder, or a training run (its folder or a checkpoint file)")
    gap.add_argument("--start", type=float, default=None, help="refinement's starting time (default: the model's)")
    gap.add_argument("--molecules", type=int, default=20,
                     help="the first N test molecules with a start in QM9's conformer")
    return parser.parse_args(argv)


def run_folder(args, variant: str, seed: int) -> Path:
    return Path(args.out).parent / "runs" / f"{variant}_seed{seed}"


def fit_arguments(args, variant: str, seed: int) -> list[str]:
    root = run_folder(args, variant, seed)
    arguments = ["fit", "--config", args.recipe, "--seed_everything", str(seed),
                 "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root),
                 "--trainer.accelerator", args.accelerator, "--trainer.max_time", "99:00:00:00",
                 "--data.init_args.source", args.train, "--data.init_args.test_source", args.test]
    if args.epochs is not None:
        arguments += ["--trainer.max_epochs", str(args.epochs)]
    if args.consistency_start is not None:
        arguments += ["--model.init_args.consistency_start_epoch", str(args.consistency_start)]
    if args.batch_size is not None:
        arguments += ["--data.init_args.batch_size", str(args.batch_size)]
    for key, value in VARIANTS[variant].items():
        arguments += [f"--model.init_args.{key}", value]
    return arguments + shlex.split(args.fit_args)


def generate_all(model, references: list, mode: str, k: int, steps: int, seed: int,
                 chunk: int = 40, start: float | None = None) -> list:
    """Generated positions ([k, n_atoms, 3] arrays) for every reference structure's molecule;
    ``start``: of one-shot and refinement, a fraction of T (default: the model's)."""
    import numpy as np
    import torch
    from torch_geometric.data import Batch

    generated = []
    for first in range(0, len(references), chunk):
        part = references[first:first + chunk]
        data = [model.graph_data(a.info["smiles"]) for a in part]
        batch = Batch.from_data_list([d for d in data for _ in range(k)])
        with torch.no_grad():
            # seeded by the global number of the chunk's first structure: refinement's starting
            # conformers of molecule m are diverse_conformers(smiles, k, seed + m k), whatever the chunking
            positions = model.generate_positions(batch, mode=mode, steps=steps, seed=seed + first * k, start=start)
        positions = positions.double().cpu().numpy()
        offset = 0
        for atoms in part:
            n = len(atoms)
            generated.append(np.stack([positions[offset + i * n: offset + (i + 1) * n] for i in range(k)]))
            offset += k * n
    return generated


def model_modes(model) -> list[str]:
    """The generation modes a model supports: a refiner (``max_noise_time`` < 1) none from noise."""
    return [m for m in MODES if m != "ddim" or getattr(model, "max_noise_time", 1.0) == 1.0]


def record_modes(record: dict) -> list[str]:
    """The generation modes a record has results of (older records: no refinement)."""
    return [m for m in MODES if f"{m}_rmsd" in record]


def evaluate(model, test_file: str, n_test: int | None, k: int, steps: int, seed: int = 0,
             start: float | None = None) -> dict:
    """Per-molecule structure metrics of ``model`` on the test molecules (see the module docs)."""
    import ase.io
    import numpy as np
    from ase import Atoms

    from zoo.data.validity import structure_validity
    from zoo.metrics import best_rmsd

    references = ase.io.read(test_file, index=":")[:n_test]
    per_mode = {}
    reference_energy = [model.energy(a) for a in references]
    for mode in model_modes(model):
        generated = generate_all(model, references, mode, k, steps, seed, start=start)
        rmsd = [[best_rmsd(x, a.positions, a.info["smiles"]) for x in samples]
                for samples, a in zip(generated, references)]
        valid = [[structure_validity(x, a.info["smiles"]).valid for x in samples]
                 for samples, a in zip(generated, references)]
        energy = [model.energy(Atoms(numbers=a.numbers, positions=samples[0], info=a.info), check_distances=False)
                  for samples, a in zip(generated, references)]
        per_mode[mode] = {"rmsd": rmsd, "valid": valid, "energy": energy}
    return {"qm9_id": [int(a.info["qm9_id"]) for a in references], "reference_energy": reference_energy,
            **{f"{mode}_{name}": values for mode, result in per_mode.items() for name, values in result.items()}}


def run_one(args) -> dict:
    """Fit one variant, evaluate it on the test molecules; prints one JSON record."""
    import torch
    from lightning.pytorch.callbacks import Timer

    from zoo.cli import lightning_main

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cli = lightning_main(fit_arguments(args, args.variant, args.seed))
    trainer, model = cli.trainer, cli.model.model
    fit_seconds = next(c for c in trainer.callbacks if isinstance(c, Timer)).time_elapsed("train")
    model.eval()
    started = time.perf_counter()
    record = {"variant": args.variant, "seed": args.seed, "recipe": args.recipe, "epochs": trainer.current_epoch,
              "steps": trainer.global_step, "fit_seconds": fit_seconds,
              "n_train": len(cli.datamodule.train_dataset), "device": str(next(model.parameters()).device),
              "fit_args": args.fit_args, "consistency_start": int(cli.model.consistency_start_epoch),
              **evaluate(model, args.test, args.n_test, args.k, args.ddim_steps)}
    record["evaluate_seconds"] = time.perf_counter() - started
    print("RESULT " + json.dumps(record), flush=True)
    return record


def baseline(args) -> dict:
    """Best RMSD of the test molecules' GFN2-xTB minima to their QM9 geometries, per molecule."""
    import ase.io

    from zoo.metrics import best_rmsd

    references = ase.io.read(args.test, index=":")[:args.n_test]
    cheap = {int(a.info["qm9_id"]): a for a in ase.io.read(args.test_xtb, index=":")}
    return {int(a.info["qm9_id"]): best_rmsd(cheap[int(a.info["qm9_id"])].positions, a.positions, a.info["smiles"])
            for a in references if int(a.info["qm9_id"]) in cheap}


def rdkit_baseline(args) -> dict:
    """Best RMSD of ``args.k`` RDKit ETKDG conformers (seeds 0..k-1; the one-shot mode's starting
    structures, before any model) of each test molecule to its QM9 geometry: [k] per molecule."""
    import ase.io

    from zoo.metrics import best_rmsd
    from zoo.models.consistency import etkdg_conformer

    references = ase.io.read(args.test, index=":")[:args.n_test]
    return {int(a.info["qm9_id"]): [best_rmsd(etkdg_conformer(a.info["smiles"], seed), a.positions, a.info["smiles"])
                                    for seed in range(args.k)] for a in references}


def load_model(ref: str):
    """The consistency model of a registry name or model folder, or of a training run (a run folder
    with its config.yaml, or a checkpoint file in it), in eval mode."""
    import zoo
    from zoo.registry import load_run

    path = Path(ref)
    if path.suffix == ".ckpt" or (path / "config.yaml").is_file():
        return load_run(path).model.eval()
    return zoo.load(ref).model.eval()


def report_name(ref: str, start: float | None) -> str:
    """The file name of a ``published`` report: the model's name (a run's: its recipe folder and
    checkpoint) and a starting time other than the model's."""
    path = Path(ref)
    name = f"{path.parents[2].name}_{path.stem}" if path.suffix == ".ckpt" and len(path.parents) > 2 else path.name
    return name + ("" if start is None else f"_start{start:g}")


def evaluate_published(args) -> None:
    """RMSD (mean and best of k) and validity of a trained model's structures for the test
    molecules, both modes, beside the RDKit ETKDG conformers and the GFN2-xTB minima; written to
    ``results/published_<model>.{json,md}``."""
    import ase.io
    import numpy as np
    import torch

    from zoo.data.validity import structure_validity
    from zoo.metrics import best_rmsd
    from zoo.models._molecules import REFINE_POOL, diverse_conformers, etkdg_conformer

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = load_model(args.model)
    record = {"model": args.model, "k": args.k, "ddim_steps": args.ddim_steps, "pool": REFINE_POOL, "start": args.start,
              **evaluate(model, args.test, args.n_test, args.k, args.ddim_steps, start=args.start)}
    references = ase.io.read(args.test, index=":")[:args.n_test]
    cheap = {int(a.info["qm9_id"]): a for a in ase.io.read(args.test_xtb, index=":")}
    etkdg = [[etkdg_conformer(a.info["smiles"], seed) for seed in range(args.k)] for a in references]
    record["etkdg_rmsd"] = [[best_rmsd(x, a.positions, a.info["smiles"]) for x in c] for c, a in zip(etkdg, references)]
    record["etkdg_valid"] = [[structure_validity(x, a.info["smiles"]).valid for x in c]
                             for c, a in zip(etkdg, references)]
    mmff = [[etkdg_conformer(a.info["smiles"], seed, relax=True) for seed in range(args.k)] for a in references]
    record["mmff_rmsd"] = [[best_rmsd(x, a.positions, a.info["smiles"]) for x in c] for c, a in zip(mmff, references)]
    record["mmff_valid"] = [[structure_validity(x, a.info["smiles"]).valid for x in c] for c, a in zip(mmff, references)]
    # refinement's starting structures: k diverse of a pool of MMFF conformers, before any model
    diverse = [diverse_conformers(a.info["smiles"], args.k, seed=m * args.k) for m, a in enumerate(references)]
    record["diverse_rmsd"] = [[best_rmsd(x, a.positions, a.info["smiles"]) for x in c]
                              for c, a in zip(diverse, references)]
    record["diverse_valid"] = [[structure_validity(x, a.info["smiles"]).valid for x in c]
                               for c, a in zip(diverse, references)]
    xtb = [cheap[int(a.info["qm9_id"])] for a in references]
    record["xtb_rmsd"] = [best_rmsd(x.positions, a.positions, a.info["smiles"]) for x, a in zip(xtb, references)]
    record["xtb_valid"] = [structure_validity(x, a.info["smiles"]).valid for x, a in zip(xtb, references)]
    out = Path(args.out).parent / f"published_{report_name(args.model, args.start)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record) + "\n")
    report = published_report(record, len(references))
    out.with_suffix(".md").write_text(report)
    print(report)


def dft_gap(args) -> None:
    """Does refinement improve a structure's energy at the energy model's level of theory?

    For the first ``--molecules`` test molecules whose best refinement start (5 diverse
    ETKDG+MMFF94 conformers, as ``published``) is QM9's conformer (within 0.25 Å), the B3LYP/6-31G*
    energy (the energy head's level; QM9's geometry is the minimum at B3LYP/6-31G(2df,p), close to
    it) of that start and of the structure refined from it, above the energy of QM9's geometry;
    beside the energy model's own gaps. The structures are those of ``published`` (same seeds and
    chunks). Written to ``results/dft_gap_<model>.{json,md}``.
    """
    import ase.io
    import numpy as np
    import torch
    from ase import Atoms

    from zoo.datagen.label_task import compute_labels
    from zoo.metrics import best_rmsd
    from zoo.models._molecules import diverse_conformers
    from zoo.qc import LevelOfTheory

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = load_model(args.model)
    references = ase.io.read(args.test, index=":")[:args.n_test]
    refined = generate_all(model, references, "refine", args.k, args.ddim_steps, 0, start=args.start)
    level = LevelOfTheory(method="rks", xc="b3lyp", basis="6-31g*", grid_level=3)
    rows = []
    for m, (reference, structures) in enumerate(zip(references, refined)):
        smiles = reference.info["smiles"]
        starts = diverse_conformers(smiles, args.k, seed=m * args.k)  # refinement's, structure by structure
        start_rmsd = [best_rmsd(x, reference.positions, smiles) for x in starts]
        best = int(np.argmin(start_rmsd))
        if start_rmsd[best] > SAME_CONFORMER_RMSD:
            continue
        trio = [reference.positions, starts[best], structures[best]]
        dft = [compute_labels(Atoms(reference.numbers, positions=x), level, ["energy"])["energy"] for x in trio]
        energy_model = [model.energy(Atoms(reference.numbers, positions=x, info=reference.info), check_distances=False)
                        for x in trio]
        rows.append({"qm9_id": int(reference.info["qm9_id"]), "start_rmsd": start_rmsd[best],
                     "refined_rmsd": best_rmsd(structures[best], reference.positions, smiles),
                     "dft_start_gap": dft[1] - dft[0], "dft_refined_gap": dft[2] - dft[0],
                     "model_start_gap": energy_model[1] - energy_model[0],
                     "model_refined_gap": energy_model[2] - energy_model[0]})
        row = rows[-1]
        print(f"[dft-gap] {len(rows)}/{args.molecules} qm9 {row['qm9_id']}: DFT start {row['dft_start_gap'] * 1000:.0f} "
              f"meV, refined {row['dft_refined_gap'] * 1000:.0f} meV", flush=True)
        if len(rows) == args.molecules:
            break
    record = {"model": args.model, "start": args.start, "k": args.k, "ddim_steps": args.ddim_steps,
              "level": level.describe(), "molecules": rows}
    out = Path(args.out).parent / f"dft_gap_{report_name(args.model, args.start)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record) + "\n")
    out.with_suffix(".md").write_text(dft_gap_report(record))
    print(out.with_suffix(".md").read_text())


def dft_gap_report(record: dict) -> str:
    """The Markdown page of a ``dft-gap`` record."""
    import numpy as np

    rows = record["molecules"]
    column = {key: np.array([row[key] for row in rows]) * 1000 for key in rows[0] if key.endswith("_gap")}
    lower = int(np.sum(column["dft_refined_gap"] < column["dft_start_gap"]))
    start = "" if record["start"] is None else f" --start {record['start']:g}"
    lines = [f"# Refinement and the DFT energy: {record['model']}", "",
             f"`python benchmarks/consistency/study.py dft-gap --model {record['model']}{start} --molecules {len(rows)}`: "
             f"the first {len(rows)} test molecules whose best of the {record['k']} refinement starts (diverse "
             f"ETKDG+MMFF94 conformers) is QM9's conformer (within {SAME_CONFORMER_RMSD} Å); energies above QM9's "
             f"geometry at {record['level']} (DFT) and under the model's energy head, meV.", "",
             "| structure | RMSD to QM9 (Å), mean | DFT gap, mean | DFT gap, median | energy-model gap, mean |",
             "|---|---:|---:|---:|---:|"]
    for name in ("start", "refined"):
        rmsd = np.mean([row[f"{name}_rmsd"] for row in rows])
        lines.append(f"| {name} | {rmsd:.3f} | {column[f'dft_{name}_gap'].mean():.0f} | "
                     f"{np.median(column[f'dft_{name}_gap']):.0f} | {column[f'model_{name}_gap'].mean():.0f} |")
    change = column["dft_refined_gap"] - column["dft_start_gap"]
    lines += ["", f"Refinement changes the DFT energy by {change.mean():+.0f} ± {change.std(ddof=1):.0f} meV "
              f"(mean ± std over molecules); lower in {lower} of {len(rows)} molecules.", ""]
    return "\n".join(lines)


def published_report(record: dict, n_molecules: int) -> str:
    """The Markdown page of ``study.py published`` from its record."""
    import numpy as np

    k, model = record["k"], record["model"]
    rows = [("GFN2-xTB minimum", np.mean(record["xtb_rmsd"]), np.mean(record["xtb_rmsd"]), np.mean(record["xtb_valid"])),
            (f"RDKit ETKDG, {k} conformers", np.mean(record["etkdg_rmsd"]),
             np.mean(np.min(record["etkdg_rmsd"], axis=1)), np.mean(record["etkdg_valid"])),
            (f"RDKit ETKDG+MMFF94, {k} conformers", np.mean(record["mmff_rmsd"]),
             np.mean(np.min(record["mmff_rmsd"], axis=1)), np.mean(record["mmff_valid"])),
            (f"RDKit ETKDG+MMFF94, {k} diverse of {record['pool']} (refinement's start)",
             np.mean(record["diverse_rmsd"]), np.mean(np.min(record["diverse_rmsd"], axis=1)),
             np.mean(record["diverse_valid"]))]
    for mode in record_modes(record):
        rmsd = np.array(record[f"{mode}_rmsd"])
        rows.append((f"{model}, {mode}", rmsd.mean(), rmsd.min(axis=1).mean(), np.mean(record[f"{mode}_valid"])))
    lines = [f"# {model} on {n_molecules} held-out QM9 molecules", "",
             f"`python benchmarks/consistency/study.py --k {k} --ddim-steps {record['ddim_steps']} published "
             f"--model {model}" + (f" --start {record['start']}" if record.get("start") is not None else "") + "`; RMSD (Å) to QM9's B3LYP/6-31G(2df,p) geometry after symmetry-aware "
             "superposition; valid = every bond within 0.75-1.25x its covalent radii sum and no clash "
             "(`zoo.data.validity`).", "",
             "| structures | RMSD mean | best-of-k RMSD | valid |", "|---|---|---|---|"]
    lines += [f"| {label} | {mean:.3f} | {best:.3f} | {100 * valid:.1f} % |" for label, mean, best, valid in rows]
    best = np.min(record["mmff_rmsd"], axis=1)
    near = best < SAME_CONFORMER_RMSD
    def mean(values) -> str:
        return f"mean {values.mean():.3f} Å" if values.size else "none"

    lines += ["", f"Where the best of the {k} ETKDG+MMFF94 conformers is off: {near.sum()} molecules have one within "
              f"{SAME_CONFORMER_RMSD} Å of QM9's geometry (best-of-{k} {mean(best[near])}: the local geometry), "
              f"the other {(~near).sum()} none ({mean(best[~near])}: another conformer)."]
    if "refine_rmsd" in record:
        # structure by structure against its own start: what refinement adds to the local geometry
        start, refined = np.array(record["diverse_rmsd"]), np.array(record["refine_rmsd"])
        close = start < SAME_CONFORMER_RMSD
        change = refined.min(axis=1) - start.min(axis=1)
        gained, lost = np.sum(change < -1e-3), np.sum(change > 1e-3)
        lines += ["", f"Refinement against its own starts: the {close.sum()} starting structures within "
                  f"{SAME_CONFORMER_RMSD} Å of QM9's geometry ({mean(start[close])}: MMFF94's local geometry) are "
                  f"refined to {mean(refined[close])}, closer in {np.sum(refined[close] < start[close])} of them; "
                  f"the best of {k} moves closer in {gained} molecules and further in {lost} (by more than 0.001 Å)."]
    return "\n".join(lines) + "\n"


def print_baseline(args) -> None:
    import numpy as np

    rmsd = np.array(list(baseline(args).values()))
    same = rmsd < SAME_CONFORMER_RMSD
    print(f"GFN2-xTB minimum vs QM9 geometry, {len(rmsd)} test molecules: best RMSD mean {rmsd.mean():.3f} Å, "
          f"median {np.median(rmsd):.3f} Å, 10/25/75/90th percentiles "
          f"{' / '.join(f'{q:.3f}' for q in np.percentile(rmsd, [10, 25, 75, 90]))} Å; "
          f"{same.sum()} same-conformer molecules (< {SAME_CONFORMER_RMSD} Å, mean {rmsd[same].mean():.3f} Å), "
          f"{(~same).sum()} in another conformer (mean {rmsd[~same].mean():.3f} Å)")


def print_denoising(args) -> None:
    """RMSD to the clean structure of the one-step estimate x0-hat (Å) at noise times t, beside
    x_t / alpha_t, the noisy structure rescaled (what a denoiser that did nothing would give).
    A denoiser that has learned the geometry of its training structures removes most of small
    noise; one that has not stays close to the noisy structure."""
    import torch
    from torch_geometric.data import Batch

    from zoo.data import keys, read_ase
    from zoo.metrics.structure import kabsch_rmsd

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = load_model(args.model)
    frames = read_ase(args.train, info_keys={"structure_kind": "structure_kind"}, results=["energy", "forces"],
                      mask_missing=True, molecular_graph=True)
    frames = [d for d in frames if d[keys.STRUCTURE_KIND] in (args.kind, None)][:args.structures]
    batch = Batch.from_data_list(frames)
    prepared, x0 = model.prepare(batch), model.normalise(batch)
    generator = torch.Generator().manual_seed(0)
    scale = model.position_scale
    print(f"{args.model}: {len(frames)} structures ({args.kind}) of {Path(args.train).name}; RMSD to the clean structure, Å")
    print("| t | noise sigma_t s (Å) | x0-hat of the denoiser | x_t / alpha_t (no denoising) |\n|---|---|---|---|")
    for t in args.times:
        times = torch.full((len(frames),), t, dtype=torch.long)
        noised = model.noise(prepared, x0, times, generator)
        with torch.no_grad():
            estimate, _ = model.denoise(prepared, noised.x_t, times)
        alpha, sigma = model.schedule(times)
        errors = [kabsch_rmsd(x * scale, x0 * scale, batch[keys.BATCH]).mean().item()
                  for x in (estimate, noised.x_t / alpha[0])]
        print(f"| {t} | {sigma[0].item() * scale:.3f} | {errors[0]:.3f} | {errors[1]:.3f} |")


def study(args) -> None:
    out = Path(args.out)
    records = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["variant"], r["seed"]) for r in records}
    todo = [(v, s) for s in args.seeds for v in args.variants if (v, s) not in done]
    common = [sys.executable, __file__, "--recipe", args.recipe, "--train", args.train, "--test", args.test, "--k", str(args.k),
              "--ddim-steps", str(args.ddim_steps), "--accelerator", args.accelerator, "--out", args.out]
    for flag, value in (("--epochs", args.epochs), ("--consistency-start", args.consistency_start),
                        ("--batch-size", args.batch_size), ("--n-test", args.n_test), ("--fit-args", args.fit_args)):
        if value not in (None, ""):
            common += [flag, str(value)]
    running: list[tuple[tuple[str, int], subprocess.Popen, Path]] = []
    environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    while todo or running:
        while todo and len(running) < args.jobs:
            variant, seed = todo.pop(0)
            command = common + ["run", "--variant", variant, "--seed", str(seed)]
            print(shlex.join(command), flush=True)
            if args.dry_run:
                continue
            log = run_folder(args, variant, seed).with_suffix(".log")
            log.parent.mkdir(parents=True, exist_ok=True)
            running.append(((variant, seed), subprocess.Popen(command, stdout=log.open("w"),
                                                              stderr=subprocess.STDOUT, env=environment), log))
        for entry in list(running):
            (variant, seed), process, log = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            text = log.read_text()
            if process.returncode != 0 or "RESULT " not in text:
                print(f"run {variant} seed {seed} failed (exit {process.returncode}); see {log}", flush=True)
                continue
            records.append(json.loads(text.rsplit("RESULT ", 1)[1]))
            out.parent.mkdir(parents=True, exist_ok=True)
            temporary = out.with_suffix(".json.tmp")
            temporary.write_text(json.dumps(records) + "\n")
            temporary.replace(out)
            print(f"run {variant} seed {seed} done", flush=True)
        time.sleep(2)
    if records and not args.dry_run:
        report(args)


# --- report ------------------------------------------------------------------------------------


def summarise(record: dict, molecules: list[int]) -> dict[str, float]:
    """The record's mean metrics over ``molecules`` (qm9 ids)."""
    import numpy as np

    index = {m: i for i, m in enumerate(record["qm9_id"])}
    rows = [index[m] for m in molecules if m in index]
    summary = {}
    for mode in record_modes(record):
        rmsd = np.array(record[f"{mode}_rmsd"])[rows]
        gap = np.array(record[f"{mode}_energy"])[rows] - np.array(record["reference_energy"])[rows]
        summary[f"{mode}_rmsd_mean"] = float(rmsd.mean())
        summary[f"{mode}_rmsd_best"] = float(rmsd.min(axis=1).mean())
        summary[f"{mode}_gap_eV"] = float(gap.mean())
        if f"{mode}_valid" in record:  # records before the validity check have none
            summary[f"{mode}_valid"] = float(np.array(record[f"{mode}_valid"])[rows].mean())
    return summary


def paired(records: list[dict], a: str, b: str, column: str, molecules: list[int]) -> str | None:
    """Paired comparison of variants ``b`` - ``a`` (same seed, same molecules) on a per-molecule metric."""
    import numpy as np

    differences, wins = [], []
    for ra in (r for r in records if r["variant"] == a):
        rb = next((r for r in records if r["variant"] == b and r["seed"] == ra["seed"]), None)
        if rb is None:
            continue
        sa, sb = summarise(ra, molecules), summarise(rb, molecules)
        differences.append(sb[column] - sa[column])
        wins.append(sb[column] < sa[column])
    if not differences:
        return None
    spread = f" ± {statistics.stdev(differences):.3f}" if len(differences) > 1 else ""
    return (f"| {b} − {a} | {column} | {len(differences)} | {statistics.mean(differences):+.3f}{spread} | "
            f"{sum(wins)}/{len(wins)} |")


def baseline_row(label: str, columns: list[str], mean: str, best: str) -> str:
    """A table row of structures made without a model: their RMSD in every mode's RMSD columns."""
    cells = [mean if c.endswith("rmsd_mean") else best if c.endswith("rmsd_best") else "–" for c in columns]
    return f"| {label} | – | – | – | " + " | ".join(cells) + " |"


def report(args) -> None:
    import numpy as np

    out = Path(args.out)
    records = json.loads(out.read_text())
    base, rdkit = baseline(args), rdkit_baseline(args)
    molecules = sorted(set.intersection(*(set(r["qm9_id"]) for r in records)) & set(base))
    same = [m for m in molecules if base[m] < SAME_CONFORMER_RMSD]
    modes = [m for m in MODES if all(m in record_modes(r) for r in records)]
    columns = [f"{mode}_{name}" for mode in modes for name in ("rmsd_mean", "rmsd_best", "gap_eV")]
    if all(f"{modes[0]}_valid" in r for r in records):
        columns += [f"{mode}_valid" for mode in modes]
    first = records[0]
    lines = [f"# Consistency study (QM9, {first['n_train']} training structures, {len(molecules)} test molecules)", "",
             f"Records: `{out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}`; k = {args.k} structures "
             f"per molecule and mode, DDIM {args.ddim_steps} steps; RMSD in Å (symmetry-aware, after superposition) "
             "against QM9's B3LYP/6-31G(2df,p) geometries of held-out molecules; gap = E(generated) − "
             "E(QM9 geometry) under the run's energy model, eV. Mean ± standard deviation over seeds.", "",
             f"Runs: `{first.get('recipe', RECIPE)}`, {first['epochs']} epochs, stage 2 from epoch "
             f"{first.get('consistency_start', '?')}, extra fit arguments `{first.get('fit_args') or 'none'}`.", ""]
    for title, subset in ((f"all {len(molecules)} test molecules", molecules),
                          (f"{len(same)} same-conformer test molecules (xTB minimum within "
                           f"{SAME_CONFORMER_RMSD} Å of QM9)", same)):
        lines += [f"## {title}", "", "| variant | seeds | epochs | fit s | " + " | ".join(columns) + " |",
                  "|---" * (len(columns) + 4) + "|"]
        for variant in VARIANTS:
            rows = [r for r in records if r["variant"] == variant]
            if not rows:
                continue
            summaries = [summarise(r, subset) for r in rows]
            cells = []
            for c in columns:
                values = [s[c] for s in summaries]
                spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
                cells.append(f"{statistics.mean(values):.3f}{spread}")
            lines.append(f"| {variant} | {len(rows)} | {rows[0]['epochs']} | "
                         f"{statistics.mean(r['fit_seconds'] for r in rows):.0f} | " + " | ".join(cells) + " |")
        cheap = f"{np.mean([base[m] for m in subset]):.3f}"  # one structure: its mean and best of k
        lines.append(baseline_row("GFN2-xTB minimum (baseline)", columns, cheap, cheap))
        mean, best = (f"{np.mean([f(rdkit[m]) for m in subset]):.3f}" for f in (np.mean, np.min))
        lines.append(baseline_row("RDKit ETKDG conformers (no model)", columns, mean, best))
        lines += ["", "Paired by seed (b − a; negative = b better; wins = seeds where b is better):", "",
                  "| comparison | metric | seeds | mean difference | wins |", "|---|---|---|---|---|"]
        for a, b in (("multitask", "consistency"), ("multitask_forces", "consistency_forces"),
                     ("multitask", "consistency_forces")):
            for column in [f"{m}_rmsd_mean" for m in modes] + [f"{modes[-1]}_rmsd_best", f"{modes[-1]}_gap_eV"]:
                row = paired(records, a, b, column, subset)
                if row is not None:
                    lines.append(row)
        lines.append("")
    out.with_suffix(".md").write_text("\n".join(lines))
    figures(records, out.parent, modes[-1])
    print("\n".join(lines))


def figures(records: list[dict], folder: Path, mode: str) -> None:
    """Per molecule, the energy of the structure generated in ``mode`` against the reference's (as
    the difference), and the RMSD distributions; the first seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = [r for r in records if r["seed"] == min(x["seed"] for x in records)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for r in shown:
        reference = np.array(r["reference_energy"])
        axes[0].scatter(reference, np.array(r[f"{mode}_energy"]) - reference, s=6, alpha=0.6, label=r["variant"])
        axes[1].hist(np.array(r[f"{mode}_rmsd"]).mean(axis=1), bins=30, histtype="step", label=r["variant"])
    # total energies span thousands of eV across molecules: the difference shows what matters
    axes[0].axhline(0.0, color="k", ls="--", lw=0.8)
    axes[0].set(xlabel="E(QM9 geometry), eV", ylabel=f"E(generated, {mode}) − E(QM9 geometry), eV",
                title="energy model: generated vs reference structure")
    axes[1].set(xlabel=f"RMSD to QM9 geometry ({mode}, mean of k), Å", ylabel="molecules", title="RMSD distribution")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "consistency_study.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.command == "run":
        run_one(arguments)
    elif arguments.command == "report":
        report(arguments)
    elif arguments.command == "baseline":
        print_baseline(arguments)
    elif arguments.command == "denoise":
        print_denoising(arguments)
    elif arguments.command == "published":
        evaluate_published(arguments)
    elif arguments.command == "dft-gap":
        dft_gap(arguments)
    elif arguments.command == "published-report":
        for path in map(Path, arguments.records):
            record = json.loads(path.read_text())
            path.with_suffix(".md").write_text(published_report(record, len(record["qm9_id"])))
    else:
        study(arguments)
