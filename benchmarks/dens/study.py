"""DeNS study: the same force field with and without DeNS, at equal epochs and at equal wall clock.

For each seed, three runs of a molecule's recipes (``--molecule``: ethanol or malonaldehyde; 950
training / 50 validation structures by default, the rMD17 protocol; ``--n-train``/``--n-val`` for
smaller studies and smoke tests):

- ``baseline``: the recipe ``<molecule>_forcefield`` for ``--epochs`` epochs;
- ``dens``: ``<molecule>_forcefield_dens`` for ``--epochs`` epochs (its DeNS weight
  decays 5 -> 0 over exactly these epochs);
- ``baseline_time``: the baseline given the wall clock the DeNS run took (``trainer.max_time``), i.e.
  as many more epochs as DeNS's extra cost buys: is DeNS better than training longer?

Each run is a separate process (``python study.py run ...``) that fits through the zoo CLI and then
measures the final (EMA) model on the independent test set (separate MD trajectories): energy and
force MAE/RMSE, training structures/s, and, with ``--md-ps``, an MD stability run ("Forces are not
enough": NVT 500 K, 0.5 fs) with MD steps/s. Results go to ``results/dens_study.json`` for ethanol,
``results/dens_study_<molecule>.json`` otherwise (one record per run, appended as runs finish, so an
interrupted study resumes) and a Markdown table.

Run folders go to ``runs/<records file's stem>/<variant>_seed<seed>`` beside the records file. A run
interrupted before its record was written (a study longer than a session) continues from
its ``last.ckpt`` when the study is started again with the same options: epoch, optimizer, EMA and
the Timer's elapsed time are restored, so ``fit_seconds`` counts both parts.

``--interaction``, ``--add-on`` and ``--dens NAME=VALUE`` (a setting of the DeNS add-on: sigma,
corrupt_ratio, probability, loss_weight, ...) apply to every run of a study and name its variants
(e.g. ``dens-many_body-anneal-sigma=0.1``). Each record also keeps the last validation force MAE
(``val_forces_mae_meV_A``, on the split's validation structures): DeNS's settings are chosen on it,
never on the test trajectory.

    python benchmarks/dens/study.py --epochs 12 --seeds 0 1 2 --md-ps 1
    python benchmarks/dens/study.py --molecule malonaldehyde --epochs 12 --seeds 0 1 2
    python benchmarks/dens/study.py --interaction many_body --add-on anneal --dens sigma=0.1 --epochs 60 --seeds 0
    python benchmarks/dens/study.py --dry-run            # print the runs only
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from zoo._files import append_json_record

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
#: the packaged recipe of each variant (zoo.recipes)
RECIPES = {"baseline": "{}_forcefield", "dens": "{}_forcefield_dens", "baseline_time": "{}_forcefield"}
MOLECULES = ("ethanol", "malonaldehyde")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--molecule", choices=MOLECULES, default="ethanol")
    parser.add_argument("--epochs", type=int, default=12, help="the recipes' max_epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=list(RECIPES), default=list(RECIPES),
                        help="which runs per seed (baseline_time needs its seed's dens run)")
    parser.add_argument("--train", default=None, help="default: data/<molecule>/<molecule>_pbe_def2svp_train.extxyz")
    parser.add_argument("--test", default=None, help="default: the same, _test")
    parser.add_argument("--n-train", type=int, default=950)
    parser.add_argument("--n-val", type=int, default=50)
    parser.add_argument("--md-ps", type=float, default=0.0, help="MD stability run length (0: none)")
    parser.add_argument("--out", default=None, help="default: results/dens_study[_<molecule>].json")
    parser.add_argument("--dry-run", action="store_true")
    _add_variant_options(parser)
    run = sub.add_parser("run", help="one run (used by the study itself)")
    run.add_argument("--variant", choices=sorted(RECIPES), required=True)
    run.add_argument("--seed", type=int, required=True)
    run.add_argument("--max-time", default=None, help="DD:HH:MM:SS wall clock instead of --epochs")
    run.add_argument("--split-file", default=None, help="a saved split instead of the random one of the seed")
    _add_variant_options(run)
    args = parser.parse_args(argv)
    data = ROOT / "data" / args.molecule / f"{args.molecule}_pbe_def2svp"
    args.train = args.train or f"{data}_train.extxyz"
    args.test = args.test or f"{data}_test.extxyz"
    suffix = "" if args.molecule == "ethanol" else f"_{args.molecule}"
    args.out = args.out or str(RESULTS / f"dens_study{suffix}.json")
    return args


def _add_variant_options(parser) -> None:
    """What makes a variant beyond its recipe: options of the study and of each of its runs."""
    parser.add_argument("--interaction", choices=["two_body", "many_body"], default="two_body",
                        help="the backbone's interaction (many_body: its run folder and record say so)")
    parser.add_argument("--add-on", nargs="*", default=[], help="recipe add-ons (zoo fit --config NAME after the "
                        "recipe; e.g. anneal); its run folder and record say so")
    parser.add_argument("--dens", nargs="*", default=[], metavar="NAME=VALUE",
                        help="DeNS settings of the dens variant (e.g. sigma=0.1 loss_weight=1); its name says so")


def run_name(variant: str, interaction: str = "two_body", add_ons: list[str] = (), dens: list[str] = ()) -> str:
    """``variant[-interaction][-add-on...][-NAME=VALUE...]``; the DeNS settings name only the dens variant."""
    return "-".join([variant] + ([interaction] if interaction != "two_body" else []) + list(add_ons)
                    + (list(dens) if variant == "dens" else []))


def dens_arguments(settings: list[str]) -> list[str]:
    """``NAME=VALUE`` settings of the DeNS add-on as ``zoo fit`` options."""
    arguments = []
    for setting in settings:
        name, separator, value = setting.partition("=")
        if not separator or not name or not value:
            raise SystemExit(f"study.py: --dens takes NAME=VALUE settings (e.g. sigma=0.1), not {setting!r}")
        arguments += [f"--model.init_args.dens.init_args.{name}", value]
    return arguments


def fit_arguments(args, variant: str, seed: int, max_time: str | None, split_file: str | None = None) -> list[str]:
    name = run_name(variant, args.interaction, args.add_on, args.dens)
    # runs/<records file>/: two studies in one folder (ethanol.json, malonaldehyde.json) never share a run
    root = Path(args.out).parent / "runs" / Path(args.out).stem / f"{name}_seed{seed}"
    arguments = ["fit", "--config", RECIPES[variant].format(args.molecule)]
    arguments += [option for add_on in args.add_on for option in ("--config", add_on)]
    if variant == "dens":
        arguments += dens_arguments(args.dens)
    arguments += ["--seed_everything", str(seed),
                 "--trainer.default_root_dir", str(root), "--trainer.logger.init_args.save_dir", str(root),
                 "--data.init_args.source", args.train,
                 "--data.init_args.split", f"{{method: random, sizes: [{args.n_train}, {args.n_val}, 0], seed: {seed}}}",
                 "--model.init_args.model.init_args.backbone.init_args.interaction", args.interaction]
    if split_file is not None:
        arguments += ["--data.init_args.split_file", split_file]
    if any(root.glob("version_*/checkpoints/last.ckpt")):  # an interrupted run of this variant continues
        arguments += ["--ckpt_path", "last"]
    if max_time is None:  # a max_time far away still installs Lightning's Timer, which times the fit
        arguments += ["--trainer.max_epochs", str(args.epochs), "--trainer.max_time", "99:00:00:00"]
    else:  # the epoch limit is lifted: the clock decides
        arguments += ["--trainer.max_epochs", "-1", "--trainer.max_time", max_time]
    return arguments


def errors(model, images) -> dict[str, float]:
    """Energy (meV) and force (meV/Å) errors of ``model`` on the labelled structures ``images``."""
    import numpy as np

    predicted = model.as_calculator().predict(images, batch_size=50)
    de = np.array([p["energy"] - a.get_potential_energy() for p, a in zip(predicted, images)])
    df = np.concatenate([(p["forces"] - a.get_forces()).reshape(-1) for p, a in zip(predicted, images)])
    return {"energy_mae_meV": 1e3 * float(np.abs(de).mean()),
            "energy_rmse_meV": 1e3 * float(np.sqrt((de ** 2).mean())),
            "forces_mae_meV_A": 1e3 * float(np.abs(df).mean()),
            "forces_rmse_meV_A": 1e3 * float(np.sqrt((df ** 2).mean()))}


def test_metrics(model, test_file: str) -> dict[str, float]:
    """:func:`errors` on every structure of ``test_file``."""
    import ase.io

    images = ase.io.read(test_file, index=":")
    return {"n_test": len(images), **errors(model, images)}


def run_one(args) -> dict:
    """Fit one variant and measure it; prints one JSON record."""
    import torch
    from lightning.pytorch.callbacks import Timer

    import zoo
    from zoo.cli import lightning_main

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cli = lightning_main(fit_arguments(args, args.variant, args.seed, args.max_time, args.split_file))
    trainer, model = cli.trainer, cli.model.model
    # the training loop's own time (validation included), without start-up and data reading
    fit_seconds = next(c for c in trainer.callbacks if isinstance(c, Timer)).time_elapsed("train")
    validation_forces = trainer.callback_metrics.get("val/forces_mae")  # the last validation, as tested
    record = {"variant": run_name(args.variant, args.interaction, args.add_on, args.dens),
              "interaction": args.interaction, "add_ons": args.add_on,
              "dens_settings": args.dens if args.variant == "dens" else [],
              "val_forces_mae_meV_A": None if validation_forces is None else 1e3 * float(validation_forces),
              "seed": args.seed, "epochs": trainer.current_epoch,
              "allocator_tuned": zoo.keep_freed_memory(),  # applied by lightning_main: says whether it could be
              "steps": trainer.global_step, "fit_seconds": fit_seconds,
              "train_structures_per_s": trainer.current_epoch * len(cli.datamodule.train_dataset) / fit_seconds,
              **test_metrics(model, args.test)}
    if args.md_ps > 0:
        import ase.io
        import numpy as np

        from zoo.analysis import md_stability

        reference = ase.io.read(args.train, index=":")
        result = md_stability(reference[0], model.as_calculator(),
                              np.stack([a.positions for a in reference]), time_ps=args.md_ps, seed=args.seed)
        record.update(md_stable_ps=result.stable_time_ps, md_collapsed=result.collapsed,
                      md_h_error=result.h_error, md_steps_per_s=result.steps_per_second)
    print("RESULT " + json.dumps(record), flush=True)
    return record


def _seconds_to_max_time(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 86400:02d}:{seconds % 86400 // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def study(args) -> None:
    out = Path(args.out)
    records = json.loads(out.read_text()) if out.is_file() else []
    done = {(r["variant"], r["seed"]) for r in records}
    shared = ["--interaction", args.interaction, "--add-on", *args.add_on, "--dens", *args.dens]
    for seed in args.seeds:
        for variant in args.variants:
            name = run_name(variant, args.interaction, args.add_on, args.dens)
            if (name, seed) in done:
                continue
            max_time = None
            if variant == "baseline_time":
                dens_name = run_name("dens", args.interaction, args.add_on, args.dens)
                dens_run = next((r for r in records if r["variant"] == dens_name and r["seed"] == seed), None)
                if dens_run is None:
                    print(f"study.py: {name} seed {seed} needs the wall clock of {dens_name} seed {seed}, "
                          "which has no record yet", flush=True)
                    continue
                max_time = _seconds_to_max_time(dens_run["fit_seconds"])
            command = [sys.executable, __file__, "--molecule", args.molecule, "--epochs", str(args.epochs),
                       "--train", args.train, "--test", args.test, "--n-train", str(args.n_train),
                       "--n-val", str(args.n_val), "--md-ps", str(args.md_ps), "--out", args.out,
                       "run", "--variant", variant, "--seed", str(seed), *shared] + (["--max-time", max_time] if max_time else [])
            print(" ".join(command), flush=True)
            if args.dry_run:
                continue
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            # another study may write the same file (one a core): re-read it when appending
            records = append_json_record(out, json.loads(output.rsplit("RESULT ", 1)[1]))
    if records:
        out.with_suffix(".md").write_text(table(records, args))


def table(records: list[dict], args) -> str:
    """Mean ± standard deviation over seeds per variant, in the order the variants were first run."""
    columns = ["epochs", "fit_seconds", "train_structures_per_s", "val_forces_mae_meV_A", "energy_mae_meV",
               "forces_mae_meV_A", "forces_rmse_meV_A"]
    columns += ["md_stable_ps", "md_h_error", "md_steps_per_s"] if args.md_ps > 0 else []
    test = Path(args.test).resolve()
    test = test.relative_to(ROOT) if test.is_relative_to(ROOT) else test  # the same title from any checkout
    title = (f"DeNS study, {args.molecule}, {args.n_train}/{args.n_val}, test {test}; "
             f"{os.environ.get('OMP_NUM_THREADS', '?')} thread(s)")
    lines = [title, "",
             "| variant | seeds | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for variant in dict.fromkeys(r["variant"] for r in records):
        rows = [r for r in records if r["variant"] == variant]
        cells = []
        for c in columns:
            values = [float(r[c]) for r in rows if r.get(c) is not None]
            spread = f" ± {statistics.stdev(values):.3g}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.4g}{spread}" if values else "–")
        seeds = ",".join(str(r["seed"]) for r in rows)
        lines.append(f"| {variant} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    arguments = parse_args()
    run_one(arguments) if arguments.command == "run" else study(arguments)
