"""``zoo tour``: the README's first command — every published model at work, in a few CPU minutes.

1. **Registry**: every model of ``checkpoints.json`` loaded with :func:`zoo.load` (sha256-checked;
   offline, the copy shipped in the package).
2. **Hamiltonian**: a held-out molecule (the first test structure of the model's recipe) → the
   predicted Hamiltonian as PySCF's initial guess: SCF cycles and time against MINAO, and the error
   of the predicted H against the converged Fock matrix.
3. **Force field**: Langevin MD (500 K, 0.5 fs) of a held-out structure through the ASE calculator:
   steps/s, stable time, largest bond deviation, h(r) error.
4. **Consistency**: an equilibrium structure generated from a SMILES of a held-out molecule, and its
   RMSD to the reference geometry.
5. **Fine-tuning**: a published model fine-tuned for a few steps through the Lightning CLI on new
   QM9 molecules; test error before and after.

A family without a published model is reported as such. The report is printed and written to
``<out>/report.md`` with the figures (PNG) beside it.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Section:
    """One part of the tour: its lines of report, and a figure if it drew one."""

    title: str
    lines: list[str] = field(default_factory=list)
    figure: Path | None = None
    seconds: float = 0.0

    def markdown(self) -> str:
        text = f"## {self.title} ({self.seconds:.1f} s)\n\n" + "\n".join(f"- {line}" for line in self.lines)
        return text + (f"\n\n![{self.title}]({self.figure.name})\n" if self.figure else "\n")


def _published(family: str | None = None) -> list:
    from zoo.registry import load_manifest

    return [m for m in load_manifest().models if family in (None, m.family)]


def _held_out(task):
    """The first test structure of the model's recipe (never seen in training), as ASE Atoms."""
    from zoo.registry import recipe_datamodule

    with tempfile.TemporaryDirectory() as split_dir:
        datamodule = recipe_datamodule(task.registry_info.info, split_dir)
        datamodule.setup("test")
        return datamodule.test_dataset, datamodule.test_dataset[0].to_ase()


def _first_with_data(family: str):
    """``(name, task, test set, first test structure)`` of the first published model of ``family``
    whose recipe's data are in this checkout (some are made by a command, see data/README.md), or None."""
    import zoo
    from zoo.registry import MissingDataError

    for entry in _published(family):
        task = zoo.load(entry.name)
        try:
            return (entry.name, task, *_held_out(task))
        except MissingDataError:
            continue
    return None


def _figure(path: Path, draw: Callable) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 3.2), constrained_layout=True)
    draw(axis)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def registry_section(out: Path) -> Section:
    import zoo

    section = Section("Registry: every published model")
    for entry in _published():
        start = time.perf_counter()
        task = zoo.load(entry.name)
        parameters = sum(p.numel() for p in task.parameters())
        section.lines.append(f"`{entry.name}` ({entry.family}, {', '.join(entry.elements)}): {parameters:,} parameters, "
                             f"loaded in {time.perf_counter() - start:.2f} s from {task.registry_info.source}")
    return section


def hamiltonian_section(out: Path) -> Section:
    from zoo.qc.guess import model_guess, scf_cycles

    section = Section("Hamiltonian: a predicted H as PySCF's initial guess")
    found = _first_with_data("hamiltonian")
    if found is None:
        section.lines.append("no Hamiltonian model is published with its data in this checkout")
        return section
    name, task, _, atoms = found
    model = task.model
    mol = model.level.build_mole(atoms.numbers, atoms.positions)
    minao = scf_cycles(mol, model.level)
    guessed = scf_cycles(mol, model.level, dm0=model_guess(model, model.level.build_scf(mol)))
    converged = model.level.build_scf(mol)
    converged.kernel()
    predicted = model.predict(atoms)["hamiltonian"]
    error = 1e6 * float(np.abs(predicted - converged.get_fock()).mean())
    section.lines += [
        f"`{name}` on the first test structure of its recipe ({atoms.get_chemical_formula()}, "
        f"{model.level.describe()})",
        f"SCF cycles: {guessed['cycles']} from the model's density vs {minao['cycles']} from MINAO "
        f"({guessed['cycles'] / minao['cycles']:.2f}x); SCF time {guessed['time_s']:.2f} s vs {minao['time_s']:.2f} s; "
        f"same energy to {abs(guessed['energy'] - minao['energy']):.1e} Eh",
        f"predicted H vs the converged Fock matrix: MAE {error:.1f} µEh",
    ]
    section.figure = _figure(out / "scf_cycles.png", lambda axis: (
        axis.bar(["MINAO", "model"], [minao["cycles"], guessed["cycles"]], color=["0.6", "tab:blue"]),
        axis.set_ylabel("SCF cycles"), axis.set_title(atoms.get_chemical_formula())))
    return section


def force_field_section(out: Path, md_steps: int = 400) -> Section:
    from zoo.analysis import md_stability
    from zoo.analysis.md_stability import bond_lengths, find_bonds

    section = Section("Force field: molecular dynamics through ASE")
    found = _first_with_data("force-field")
    if found is None:
        section.lines.append("no force-field model is published with its data in this checkout")
        return section
    name, task, test, atoms = found
    reference = np.stack([test[i].pos.double().numpy() for i in range(len(test))])
    result = md_stability(atoms, task.model.as_calculator(), reference, time_ps=md_steps * 0.5e-3)
    bonds = find_bonds(atoms.numbers, reference[0])
    deviation = np.abs(bond_lengths(result.positions, bonds) - bond_lengths(reference, bonds).mean(0)).max(axis=1)
    section.lines += [
        f"`{name}`: {result.n_steps} steps of Langevin NVT at 500 K, 0.5 fs, from the first test "
        f"structure of its recipe ({atoms.get_chemical_formula()})",
        f"{result.steps_per_second:.0f} MD steps/s; {'collapsed' if result.collapsed else 'stable'} for "
        f"{result.stable_time_ps:.2f} ps; largest bond deviation {deviation.max():.3f} Å; h(r) error "
        f"{result.h_error:.3f} against the test trajectory",
    ]
    times = np.arange(len(deviation)) * (result.n_steps / max(len(deviation) - 1, 1)) * 0.5e-3
    section.figure = _figure(out / "md_bond_deviation.png", lambda axis: (
        axis.plot(times, deviation), axis.set_xlabel("time (ps)"),
        axis.set_ylabel("largest bond deviation (Å)"), axis.set_title(atoms.get_chemical_formula())))
    return section


def consistency_section(out: Path, k: int = 4) -> Section:
    section = Section("Consistency: an equilibrium structure from a SMILES")
    found = _first_with_data("consistency")
    if found is None:
        section.lines.append("no consistency model is published with its data in this checkout")
        return section
    from zoo.metrics import best_rmsd

    name, task, _, reference = found
    smiles = reference.info["smiles"]
    section.lines.append(f"`{name}`: {k} structures per mode for {smiles} (a test molecule of its recipe); "
                         "RMSD to its reference geometry after superposition over graph symmetries:")
    for mode in ("one_shot", "ddim"):
        generated = task.model.generate(smiles, k=k, mode=mode, seed=0)
        rmsds = [best_rmsd(atoms.positions, reference.positions, smiles) for atoms in generated]
        section.lines.append(f"{mode}: mean {np.mean(rmsds):.3f} Å, best of {k} {min(rmsds):.3f} Å")
    return section


def finetune_section(out: Path, steps: int = 50, lr: float = 3e-4, keep_statistics: bool = True,
                     name: str = "qm9-u0-demo") -> Section:
    import lightning.pytorch as pl

    import zoo
    from zoo.cli import lightning_main, recipes_dir

    section = Section("Fine-tuning through the Lightning CLI")
    if name not in {m.name for m in _published()}:
        section.lines.append(f"`{name}` is not published")
        return section
    root = out / "finetune"
    # QM9 molecules after the published model's 2400 (its training, validation and test rows); a
    # fine-tune on 200 molecules needs the pretrained statistics and a small learning rate: with
    # the recipe's lr 3e-3 (or re-fitted reference energies) it loses the pretrained accuracy
    data = ["--data.init_args.reader_kwargs", f"{{indices: {list(range(2400, 2700))}}}",
            "--data.init_args.split", "{method: random, sizes: [200, 50, 50], seed: 0}"]
    options = ["--model.init_args.keep_pretrained_statistics", str(keep_statistics).lower(),
               "--model.init_args.optimizer.init_args.lr", str(lr)]
    common = ["--config", str(recipes_dir() / "qm9_demo.yaml"), *data, *options, "--trainer.default_root_dir", str(root),
              "--trainer.logger.init_args.save_dir", str(root), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false"]
    fit = lightning_main(["fit", *common, "--model.init_args.pretrained", name, "--trainer.max_steps", str(steps),
                          "--trainer.max_epochs", "-1", "--trainer.limit_val_batches", "1"])
    tuned = fit.trainer.test(fit.model, datamodule=fit.datamodule, verbose=False)[0]
    before = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    published = before.test(zoo.load(name), datamodule=fit.datamodule, verbose=False)[0]
    section.lines += [
        f"`zoo fit --config recipes/qm9_demo.yaml --model.init_args.pretrained {name} {' '.join(options)} "
        f"--trainer.max_steps {steps}` on 200 QM9 molecules the model never saw (qm9pack rows 2400-2699)",
        f"test U0 MAE on 50 of them: {published['test/U0_mae']:.4f} eV before, {tuned['test/U0_mae']:.4f} eV after "
        f"{steps} steps; run folder {fit.trainer.log_dir}",
    ]
    return section


def tour(out: str | Path = "tour", md_steps: int = 400, finetune_steps: int = 50, finetune_lr: float = 3e-4,
         keep_statistics: bool = True) -> list[Section]:
    """Run every section, print the report and write ``<out>/report.md``; returns the sections."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # a compact report: Lightning's start-up messages and library warnings stay out of it (after
    # its import, which sets its loggers' levels)
    import lightning.pytorch  # noqa: F401

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sections = _run_sections(out, md_steps, lambda o: finetune_section(o, finetune_steps, finetune_lr,
                                                                          keep_statistics))
    report = "# zoo tour\n\n" + "\n".join(s.markdown() for s in sections)
    (out / "report.md").write_text(report, encoding="utf-8")
    print(f"zoo tour: report and figures in {out.resolve()}")
    return sections


def _run_sections(out: Path, md_steps: int, finetune: Callable) -> list[Section]:
    parts = [registry_section, hamiltonian_section, lambda o: force_field_section(o, md_steps),
             consistency_section, finetune]
    sections = []
    for part in parts:
        start = time.perf_counter()
        section = part(out)
        section.seconds = time.perf_counter() - start
        sections.append(section)
        print(f"\n{section.markdown()}", flush=True)
    return sections


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo tour", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", default="tour", help="folder for report.md and the figures")
    parser.add_argument("--md-steps", type=int, default=400, help="MD steps of the force-field section")
    parser.add_argument("--finetune-steps", type=int, default=50, help="optimiser steps of the fine-tuning section")
    parser.add_argument("--finetune-lr", type=float, default=3e-4, help="its learning rate")
    parser.add_argument("--refit-statistics", action="store_true",
                        help="fit shift, scale and reference energies on the fine-tuning data instead of keeping them")
    args = parser.parse_args(argv)
    tour(args.out, args.md_steps, args.finetune_steps, args.finetune_lr, not args.refit_statistics)
    return 0
