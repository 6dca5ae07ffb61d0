"""``zoo tour``: the README's first command — every published model at work, in a few CPU minutes.

1. **Registry**: every model of ``checkpoints.json`` loaded with :func:`zoo.load` (sha256-checked;
   offline, the copy shipped in the package).
2. **Hamiltonian**: held-out molecules (the first test structures of the model's recipe) → the
   predicted Hamiltonian as PySCF's initial guess: SCF cycles and time against MINAO, and the error
   of the predicted H against the converged Fock matrix.
3. **Force field**: Langevin MD (500 K, 0.5 fs) of a held-out structure through the ASE calculator:
   steps/s, stable time, largest bond deviation, h(r) error; predicted against DFT forces on test
   structures.
4. **Consistency**: equilibrium structures generated from a SMILES of a held-out molecule, and
   their RMSD to the reference geometry.
5. **Fine-tuning**: a published model fine-tuned for a few steps through the Lightning CLI on new
   QM9 molecules; test error before and after, and the learning curve.

A family without a published model, or without the data of its recipe, is reported as such: the
recipes ship with zoo, their data are files under ``data/`` of a source checkout, found in the
working folder (``--root`` names another). Each section's title is printed when it starts and its
report when it ends; the whole report is written to ``<out>/report.md`` with the figures (PNG)
beside it. The tour writes nothing outside ``<out>``.

Long because the tour is read as one walk through the package: its five sections follow each other
here in the order they run, each a short use of the public API, as a user would write it.
"""

from __future__ import annotations

import argparse
import csv
import functools
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: What a section reports when no model of its family has the data of its recipe here.
NO_DATA = "no {} model is published with its data here (data/ in the working folder, or --root)"
#: Colours of the figures: the reference (MINAO, DFT, QM9's geometry) grey, the model blue, a second series orange.
REFERENCE_COLOUR, MODEL_COLOUR, SECOND_COLOUR = "0.55", "tab:blue", "tab:orange"


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


def _held_out(task, root: Path | None):
    """The test set of the model's recipe (never seen in training) and its first structure as ASE Atoms;
    the recipe's data paths are relative to ``root`` (default: the working folder).

    Raises:
        MissingDataError: neither the recipe's data nor a test set of its own are under ``root``.
    """
    from zoo.registry import MissingDataError, recipe_datamodule, recipe_test_set

    with tempfile.TemporaryDirectory() as split_dir:
        try:
            datamodule = recipe_datamodule(task.registry_info.info, split_dir, root)
        except MissingDataError:  # training data made by a command: a test set in a file of its own will do
            test = recipe_test_set(task.registry_info.info, root)
            return test, test[0].to_ase()
        datamodule.setup("test")
        return datamodule.test_dataset, datamodule.test_dataset[0].to_ase()


def _first_with_data(family: str, root: Path | None):
    """``(name, task, test set, first test structure)`` of the first published model of ``family``
    that nothing supersedes and whose recipe's data are under ``root`` (some are made by a
    command, see data/README.md), or None."""
    import zoo
    from zoo.registry import MissingDataError

    for entry in _published(family):
        if entry.superseded_by is not None:
            continue
        task = zoo.load(entry.name)
        try:
            return (entry.name, task, *_held_out(task, root))
        except MissingDataError:
            continue
    return None


def _plain_smiles(smiles: str) -> str:
    """``smiles`` without its atom maps and hydrogen atoms, as a reader writes it (``CC#N``)."""
    from rdkit import Chem

    from zoo.data.molgraph import mol_from_smiles

    return Chem.MolToSmiles(Chem.RemoveHs(mol_from_smiles(smiles)))


def _figure(path: Path, *panels: Callable, share_axes: bool = False) -> Path:
    """Draw each of ``panels`` (a function of a matplotlib axis) side by side, and save to ``path``.

    ``share_axes``: the panels show one scale (structures drawn at the same size).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), constrained_layout=True,
                                squeeze=False, sharex=share_axes, sharey=share_axes)
    for draw, axis in zip(panels, axes[0]):
        draw(axis)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def registry_section(section: Section, out: Path) -> None:
    import zoo

    for entry in _published():
        start = time.perf_counter()
        task = zoo.load(entry.name)
        parameters = sum(p.numel() for p in task.parameters())
        section.lines.append(f"`{entry.name}` ({entry.family}, {', '.join(entry.elements)}): {parameters:,} parameters, "
                             f"loaded in {time.perf_counter() - start:.2f} s from {task.registry_info.source}"
                             + (f"; superseded by `{entry.superseded_by}`" if entry.superseded_by else ""))


def _scf(mf, model=None) -> dict:
    """Run PySCF's SCF of ``mf`` from MINAO, or from the density that ``model`` predicts.

    The time covers what a user waits for: the model's guess (made on ``mf``, whose grids and
    integrals the SCF then reuses) and the SCF.
    """
    from zoo.interfaces import model_guess

    start = time.perf_counter()
    energy = mf.kernel(dm0=None if model is None else model_guess(model, mf))
    return {"cycles": int(mf.cycles), "time_s": time.perf_counter() - start, "energy": float(energy),
            "converged": bool(mf.converged)}


def hamiltonian_section(section: Section, out: Path, molecules: int = 2, root: Path | None = None) -> None:
    found = _first_with_data("hamiltonian", root)
    if found is None:
        section.lines.append(NO_DATA.format("Hamiltonian"))
        return
    name, task, test, _ = found
    model = task.model
    labels, cycles = [], []
    count = min(molecules, len(test))
    section.lines.append(f"`{name}` ({model.level.describe()}) on {count} test structure{'s' * (count > 1)} of its "
                         "recipe: the SCF from the model's density (the time includes the model's guess) against "
                         "PySCF's MINAO guess")
    for index in range(count):
        atoms = test[index].to_ase()
        mol = model.level.build_mole(atoms.numbers, atoms.positions)
        minao_scf = model.level.build_scf(mol)
        minao = _scf(minao_scf)
        guessed = _scf(model.level.build_scf(mol), model)
        error = 1e6 * float(np.abs(model.predict(atoms)["hamiltonian"] - minao_scf.get_fock()).mean())
        unconverged = [label for label, run in (("MINAO", minao), ("model", guessed)) if not run["converged"]]
        formula = atoms.get_chemical_formula()
        section.lines.append(
            f"{formula}: {guessed['cycles']} SCF cycles from the model's density vs {minao['cycles']} from MINAO "
            f"({guessed['cycles'] / minao['cycles']:.2f}x), {guessed['time_s']:.1f} s vs {minao['time_s']:.1f} s, "
            f"same energy to {abs(guessed['energy'] - minao['energy']):.1e} Eh"
            + (f" (not converged: {', '.join(unconverged)})" if unconverged else "")
            + f"; predicted H vs the converged Fock matrix: MAE {error:.0f} µEh")
        labels.append(f"{formula}\ntest structure {index}")
        cycles.append((minao["cycles"], guessed["cycles"]))

    def bars(axis):
        x = np.arange(len(labels))
        for offset, (label, colour), values in zip((-0.2, 0.2), (("MINAO guess", REFERENCE_COLOUR),
                                                                  ("model's density", MODEL_COLOUR)), zip(*cycles)):
            drawn = axis.bar(x + offset, values, width=0.4, label=label, color=colour)
            axis.bar_label(drawn, padding=2)
        axis.set_xticks(x, labels)
        axis.set_ylabel("SCF cycles to convergence")
        axis.set_ylim(0, 1.35 * max(max(pair) for pair in cycles))  # room for the legend above the bars
        axis.set_title(f"{name}\n{model.level.describe()}", fontsize=9)
        axis.legend(loc="upper center", ncols=2, fontsize=8)

    section.figure = _figure(out / "scf_cycles.png", bars)


def force_field_section(section: Section, out: Path, md_steps: int = 400, parity_structures: int = 50,
                        root: Path | None = None) -> None:
    from zoo.analysis import md_stability
    from zoo.analysis.md_stability import COLLAPSE_THRESHOLD, bond_lengths, find_bonds
    from zoo.data import keys

    found = _first_with_data("force-field", root)
    if found is None:
        section.lines.append(NO_DATA.format("force-field"))
        return
    name, task, test, atoms = found
    calculator = task.model.as_calculator()
    reference = np.stack([test[i].pos.double().numpy() for i in range(len(test))])
    result = md_stability(atoms, calculator, reference, time_ps=md_steps * 0.5e-3)
    bonds = find_bonds(atoms.numbers, reference[0])
    # measured as md_stability measures them: a hydrogen's bond to the nearest atom of its partner's element
    lengths = bond_lengths(reference, bonds, atoms.numbers).mean(0)
    deviation = np.abs(bond_lengths(result.positions, bonds, atoms.numbers) - lengths).max(axis=1)
    structures = range(min(parity_structures, len(test)))
    predicted = np.concatenate([r["forces"] for r in calculator.predict([test[i].to_ase() for i in structures],
                                                                        batch_size=len(structures))]).ravel()
    labelled = np.concatenate([test[i][keys.FORCES].double().numpy() for i in structures]).ravel()
    force_mae = float(np.abs(predicted - labelled).mean())
    section.lines += [
        f"`{name}`: {result.n_steps} steps of Langevin NVT at 500 K, 0.5 fs, from the first test "
        f"structure of its recipe ({atoms.get_chemical_formula()})",
        f"{result.steps_per_second:.0f} MD steps/s; {'collapsed' if result.collapsed else 'stable'} for "
        f"{result.stable_time_ps:.2f} ps; largest bond deviation {deviation.max():.3f} Å (a collapse: "
        f"{COLLAPSE_THRESHOLD} Å); h(r) error {result.h_error:.3f} against the test trajectory",
        f"forces on {len(structures)} test structures: MAE {force_mae:.3f} eV/Å against the DFT labels",
    ]
    times = np.arange(len(deviation)) * (result.n_steps / max(len(deviation) - 1, 1)) * 0.5e-3

    def md(axis):
        axis.plot(times, deviation, color=MODEL_COLOUR, marker="." if len(times) < 30 else None)
        axis.axhline(COLLAPSE_THRESHOLD, color="tab:red", linestyle="--", label=f"collapse ({COLLAPSE_THRESHOLD} Å)")
        axis.set_ylim(0, 1.15 * max(COLLAPSE_THRESHOLD, deviation.max()))
        axis.set_xlabel("time (ps)")
        axis.set_ylabel("largest bond deviation (Å)")
        axis.set_title(f"MD at 500 K, {atoms.get_chemical_formula()}", fontsize=9)
        axis.legend(loc="upper left", fontsize=8)

    def parity(axis):
        limit = 1.05 * max(np.abs(labelled).max(), np.abs(predicted).max())
        axis.plot([-limit, limit], [-limit, limit], color=REFERENCE_COLOUR, linewidth=1)
        axis.scatter(labelled, predicted, s=4, alpha=0.5, color=MODEL_COLOUR, linewidths=0)
        axis.set(xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal")
        axis.set_xlabel("DFT force component (eV/Å)")
        axis.set_ylabel("predicted (eV/Å)")
        axis.set_title(f"{len(structures)} test structures: MAE {force_mae:.3f} eV/Å", fontsize=9)

    section.figure = _figure(out / "force_field.png", md, parity)


def _overlay(axis, generated, reference, bonds: np.ndarray, title: str) -> None:
    """``generated`` superposed on ``reference`` (same atom order), drawn in the reference's principal plane."""
    import torch

    from zoo.metrics import kabsch_align

    centred = reference.positions - reference.positions.mean(axis=0)
    aligned = kabsch_align(torch.as_tensor(generated.positions, dtype=torch.float64),
                           torch.as_tensor(reference.positions, dtype=torch.float64)).numpy()
    plane = np.linalg.svd(centred, full_matrices=False)[2][:2].T  # the two axes of largest spread
    for positions, colour, label, width in ((reference.positions, REFERENCE_COLOUR, "reference (QM9)", 4.0),
                                            (aligned, MODEL_COLOUR, "generated", 1.8)):
        projected = (positions - reference.positions.mean(axis=0)) @ plane
        for i, j in bonds:
            axis.plot(*projected[[i, j]].T, color=colour, linewidth=width, solid_capstyle="round")
        axis.scatter(*projected.T, s=[36 if z > 1 else 12 for z in reference.numbers], color=colour, label=label,
                     zorder=3)
    axis.set_aspect("equal")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(title, fontsize=9)
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncols=2, fontsize=8, frameon=False)


def consistency_section(section: Section, out: Path, k: int = 4, root: Path | None = None) -> None:
    found = _first_with_data("consistency", root)
    if found is None:
        section.lines.append(NO_DATA.format("consistency"))
        return
    from zoo.analysis.md_stability import find_bonds
    from zoo.metrics import best_rmsd

    name, task, _, reference = found
    smiles = reference.info["smiles"]  # atom-mapped: the reference's atom order
    section.lines.append(f"`{name}`: {k} structures per mode for {_plain_smiles(smiles)} (a test molecule of its "
                         "recipe); RMSD to its reference geometry after superposition over graph symmetries:")
    panels = []
    bonds = find_bonds(reference.numbers, reference.positions)
    for mode in ("one_shot", task.model.default_mode):  # a refiner cannot sample from noise: it refines
        generated = task.model.generate(smiles, k=k, mode=mode, seed=0)
        rmsds = [best_rmsd(atoms.positions, reference.positions, smiles) for atoms in generated]
        section.lines.append(f"{mode}: mean {np.mean(rmsds):.3f} Å, best of {k} {min(rmsds):.3f} Å")
        best = int(np.argmin(rmsds))
        panels.append(functools.partial(_overlay, generated=generated[best], reference=reference, bonds=bonds,
                                        title=f"{mode}: best of {k}, RMSD {rmsds[best]:.3f} Å"))
    section.figure = _figure(out / "consistency_structures.png", *panels, share_axes=True)


def _learning_curves(metrics_csv: Path, names: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """``{name: (steps, values)}`` of each of ``names`` logged in a CSVLogger's ``metrics.csv``."""
    curves = {name: ([], []) for name in names}
    with open(metrics_csv, newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            for name, (steps, values) in curves.items():
                if row.get(name):
                    steps.append(int(row["step"]))
                    values.append(float(row[name]))
    return curves


def finetune_section(section: Section, out: Path, steps: int = 50, lr: float = 3e-4, keep_statistics: bool = True,
                     name: str = "qm9-u0-demo") -> None:
    import lightning.pytorch as pl

    import zoo
    from zoo.cli import DEMO_RECIPE, lightning_main

    if name not in {m.name for m in _published()}:
        section.lines.append(f"`{name}` is not published")
        return
    root = out / "finetune"
    # QM9 molecules after the published model's 2400 (its training, validation and test rows); at
    # this small learning rate a fine-tune on 200 molecules needs the pretrained statistics
    # (docs/registry.md: 0.111 eV kept, 0.168 eV re-fitted, after 60 steps)
    data = ["--data.init_args.reader_kwargs", f"{{indices: {list(range(2400, 2700))}}}",
            "--data.init_args.split", "{method: random, sizes: [200, 50, 50], seed: 0}"]
    options = ["--model.init_args.keep_pretrained_statistics", str(keep_statistics).lower(),
               "--model.init_args.optimizer.init_args.lr", str(lr)]
    common = ["--config", DEMO_RECIPE, *data, *options, "--trainer.default_root_dir", str(root),
              "--trainer.logger.init_args.save_dir", str(root), "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false"]
    # a row of metrics.csv per step: the learning curve of a short fine-tune
    fit = lightning_main(["fit", *common, "--model.init_args.pretrained", name, "--trainer.max_steps", str(steps),
                          "--trainer.max_epochs", "-1", "--trainer.limit_val_batches", "1",
                          "--trainer.log_every_n_steps", "1"])
    # the recipe's ExportPretrained writes the tested model to pretrained/ in the root folder
    exported = root / "pretrained"
    tuned = fit.trainer.test(fit.model, datamodule=fit.datamodule, verbose=False)[0]
    before = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    published = before.test(zoo.load(name), datamodule=fit.datamodule, verbose=False)[0]
    section.lines += [
        f"`zoo fit --config {DEMO_RECIPE} --model.init_args.pretrained {name} {' '.join(options)} "
        f"--trainer.max_steps {steps}` on 200 QM9 molecules the model never saw (qm9pack rows 2400-2699)",
        f"test U0 MAE on 50 of them: {published['test/U0_mae']:.4f} eV before, {tuned['test/U0_mae']:.4f} eV after "
        f"{steps} steps; run folder {fit.trainer.log_dir}",
    ]
    if exported.is_dir():
        section.lines.append(f"the tuned model, exported for the registry: {exported}")
    curves = _learning_curves(Path(fit.trainer.log_dir) / "metrics.csv", ["train/loss", "val/loss", "val/U0_mae"])

    def losses(axis):
        steps_logged, values = curves["train/loss"]
        axis.plot(steps_logged, values, color=MODEL_COLOUR, linewidth=0.8, alpha=0.4, label="training batch")
        window = min(10, len(values))
        if window > 1:  # one batch is noisy: the trend is the running mean
            axis.plot(steps_logged[window - 1:], np.convolve(values, np.ones(window) / window, mode="valid"),
                      color=MODEL_COLOUR, label=f"training, mean of {window} batches")
        axis.plot(*curves["val/loss"], color=SECOND_COLOUR, marker="o", label="validation (one batch)")
        axis.set_yscale("log")
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("loss (scaled U0 MSE)")
        axis.set_title(f"fine-tuning {name}, lr {lr:g}", fontsize=9)
        axis.legend(fontsize=8)

    def errors(axis):
        axis.plot(*curves["val/U0_mae"], color=SECOND_COLOUR, marker="o", label="validation (one batch)")
        for value, style, label in ((published["test/U0_mae"], ":", "test, before"),
                                    (tuned["test/U0_mae"], "--", "test, after")):
            axis.axhline(value, color=REFERENCE_COLOUR, linestyle=style, label=label)
        axis.set_xlim(0, steps)
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("U0 MAE (eV)")
        axis.set_title("U0 error", fontsize=9)
        axis.legend(fontsize=8)

    section.figure = _figure(out / "finetune_learning_curve.png", losses, errors)


def tour(out: str | Path = "tour", md_steps: int = 400, finetune_steps: int = 50, finetune_lr: float = 3e-4,
         keep_statistics: bool = True, scf_molecules: int = 2, root: str | Path | None = None) -> list[Section]:
    """Run every section, print the report and write ``<out>/report.md``; returns the sections.

    ``root``: the folder the recipes' data paths are relative to (default: the working folder).
    """
    root = None if root is None else Path(root)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # a compact report: Lightning's start-up messages and library warnings stay out of it (after
    # its import, which sets its loggers' levels)
    import lightning.pytorch  # noqa: F401

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    parts = [
        ("Registry: every published model", registry_section),
        ("Hamiltonian: a predicted H as PySCF's initial guess",
         functools.partial(hamiltonian_section, molecules=scf_molecules, root=root)),
        ("Force field: molecular dynamics through ASE",
         functools.partial(force_field_section, md_steps=md_steps, root=root)),
        ("Consistency: equilibrium structures from a SMILES", functools.partial(consistency_section, root=root)),
        ("Fine-tuning through the Lightning CLI",
         functools.partial(finetune_section, steps=finetune_steps, lr=finetune_lr, keep_statistics=keep_statistics)),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sections = [_run_section(title, part, out) for title, part in parts]
    report = "# zoo tour\n\n" + "\n".join(s.markdown() for s in sections)
    (out / "report.md").write_text(report, encoding="utf-8")
    print(f"\nzoo tour: report and figures in {out.resolve()}")
    return sections


def _run_section(title: str, part: Callable[[Section, Path], None], out: Path) -> Section:
    """Run one section, announcing it when it starts (it may take minutes) and reporting when it ends."""
    print(f"\n## {title}", flush=True)
    section = Section(title)
    start = time.perf_counter()
    part(section, out)
    section.seconds = time.perf_counter() - start
    body = [f"- {line}" for line in section.lines] + ([f"figure: {section.figure}"] if section.figure else [])
    print("\n".join([*body, f"({section.seconds:.1f} s)"]), flush=True)
    return section


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="zoo tour", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", default="tour", help="folder for report.md, the figures and the fine-tuning run")
    parser.add_argument("--scf-molecules", type=int, default=2, help="test molecules of the Hamiltonian section")
    parser.add_argument("--md-steps", type=int, default=400, help="MD steps of the force-field section")
    parser.add_argument("--finetune-steps", type=int, default=50, help="optimiser steps of the fine-tuning section")
    parser.add_argument("--finetune-lr", type=float, default=3e-4, help="its learning rate")
    parser.add_argument("--refit-statistics", action="store_true",
                        help="fit shift, scale and reference energies on the fine-tuning data instead of keeping them")
    parser.add_argument("--root", default=None,
                        help="the folder whose data/ the recipes read (default: the working folder)")
    args = parser.parse_args(argv)
    tour(args.out, args.md_steps, args.finetune_steps, args.finetune_lr, not args.refit_statistics, args.scf_molecules,
         args.root)
    return 0
