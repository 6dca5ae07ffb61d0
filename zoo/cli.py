"""The ``zoo`` command.

``zoo fit|validate|test|predict`` are LightningCLI subcommands driven by YAML recipes
(``class_path``/``init_args``); the other subcommands are zoo's own tools.
"""

from __future__ import annotations

import importlib
import sys

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
#: The packaged recipe of ``zoo demo`` (:mod:`zoo.recipes`).
DEMO_RECIPE = "qm9_demo"


def lightning_main(argv: list[str]):
    """Run LightningCLI on ``argv`` (starting with a subcommand); returns the CLI object.

    It is zoo's :class:`~zoo._lightning_cli.ZooCLI`: ``--ckpt_path last`` continues the recipe's
    latest run in its own folder, and a run folder has one writer at a time. A ``--config`` may
    name a packaged recipe, and an overlay brings its base (:mod:`zoo.recipes`).
    """
    from zoo import recipes
    from zoo._allocator import keep_freed_memory
    from zoo._lightning_cli import ZooCLI
    from zoo.data.datamodule import AtomicDataModule
    from zoo.tasks import AtomisticTask

    keep_freed_memory()  # training steps' tensors reuse freed memory
    expanded = recipes.expand_config_arguments(argv)
    from_console = argv == sys.argv[1:]
    if from_console:
        # LightningCLI reads sys.argv itself from the console, and DDP relaunches it: the same files
        sys.argv[1:] = expanded
    return ZooCLI(
        AtomisticTask,
        AtomicDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=None if from_console else expanded,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )


def parse_config(argv: list[str]) -> dict:
    """The config that ``zoo <argv>`` (a subcommand and its options) runs, as ``--print_config``
    shows it: recipes and overlays merged, every default filled in; nothing is built or run."""
    import contextlib
    import io
    import warnings

    import yaml

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings():
        # that args are given while sys.argv has some too: on purpose here
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        try:
            lightning_main([*argv, "--print_config"])
        except SystemExit as exit:  # how jsonargparse ends after printing
            if exit.code:
                raise
    return yaml.safe_load(printed.getvalue())


def demo(argv: list[str]) -> int:
    """The main job on embedded defaults: fit the backbone on QM9 from qm9pack, then test it."""
    print(f"zoo demo: fitting the recipe {DEMO_RECIPE} (QM9 from the qm9pack package, CPU)", flush=True)
    fit = lightning_main(["fit", "--config", DEMO_RECIPE, *argv])
    best = fit.trainer.checkpoint_callback.best_model_path
    # a fresh `zoo test`, exactly as a user would run it: it tests the checkpoint's (EMA) weights
    test = lightning_main(["test", "--config", DEMO_RECIPE, *argv, "--ckpt_path", best])
    print(f"\nzoo demo: test metrics of {best}:")
    for name, value in sorted(test.trainer.callback_metrics.items()):
        print(f"  {name:24s} {float(value):.4f}")
    print(f"run folder: {fit.trainer.log_dir}")
    return 0


#: zoo's own subcommands, imported only when used so that ``zoo --help`` stays fast.
TOOLS = {
    "demo": ("zoo.cli", "demo"),
    "recipes": ("zoo.recipes", "main"),
    "tour": ("zoo.tour", "main"),
    "sample": ("zoo.datagen.commands", "sample_main"),
    "sample-qm9": ("zoo.datagen.commands", "sample_qm9_main"),
    "label": ("zoo.datagen.commands", "label_main"),
    "select": ("zoo.selection.commands", "select_main"),
    "list": ("zoo.registry.commands", "list_main"),
    "info": ("zoo.registry.commands", "info_main"),
    "download": ("zoo.registry.commands", "download_main"),
    "verify": ("zoo.registry.commands", "verify_main"),
    "hub": ("zoo.publish.commands", "hub_main"),
}


USAGE = """usage: zoo <command> [options]

training (LightningCLI; see `zoo fit --help`, `zoo fit --print_config`):
  fit, validate, test, predict
  (`zoo fit --config <recipe> --ckpt_path last` continues the recipe's latest run in its folder)
  recipes   the training recipes shipped with zoo: list, show, copy (`zoo fit --config <name>` runs one)
tools:
  tour      every published model at work in a few minutes (the README's first command)
  demo      short fit of the backbone on embedded QM9 data
  sample    non-equilibrium structures by GFN2-xTB MD or displacements
  sample-qm9 GFN2-xTB minima and QM9 reference geometries of QM9 molecules (consistency data)
  label     PySCF labels (energy, forces, Fock, overlap, density, ...)
  select    choose which structures to label (D-optimal, maxvol, farthest-point, random)
registry:
  list      published models
  info      a model's card
  download  fetch a model into the Hugging Face cache and verify it
  verify    recompute each published model's card metrics on its recipe's test split
  hub       serve the published models over a local Hub (olah); add and push models
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command in LIGHTNING_COMMANDS:
        from zoo._files import OutputBusyError
        from zoo._lightning_cli import NothingToResumeError
        from zoo.recipes import RecipeError

        try:
            lightning_main(argv)
        except (NothingToResumeError, OutputBusyError, RecipeError) as error:
            print(f"zoo {command}: error: {error}", file=sys.stderr)
            return 1
        return 0
    if command not in TOOLS:
        print(f"zoo: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module, function = TOOLS[command]
    from zoo._allocator import keep_freed_memory

    keep_freed_memory()
    return int(getattr(importlib.import_module(module), function)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
