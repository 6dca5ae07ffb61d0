"""zoo's training recipes: shipped in the package, found by name, varied by overlays.

A recipe is a LightningCLI config (YAML). The recipes of the published models are files of this
package, installed with it, so that they run without a source checkout:

    zoo recipes                                   # what there is
    zoo fit --config ethanol_forcefield_dens      # run one
    zoo recipes copy ethanol_forcefield_dens my/  # start your own from it

**Names.** ``--config`` takes a file or a recipe's name. A file that exists wins; otherwise
``NAME``, ``NAME.yaml`` and ``recipes/NAME.yaml`` (the form in which a model card names its
recipe) are the packaged recipe ``NAME.yaml``.

**Overlays.** A recipe that varies another one states only what differs, and names the recipe it
varies under ``base``: a file or a name, or a list of them, applied in order (a relative file is
next to the overlay; each file is applied once, where it first comes). ``--config OVERLAY``
becomes ``--config BASE ... --config OVERLAY``, and jsonargparse merges each file over those
before it: a mapping key by key (a class's ``init_args`` too, keeping its ``class_path``), a list
whole, unless the key ends in ``+``, which appends (``trainer: {callbacks+: [...]}``). A value an
overlay does not want from its base is set back by name (``lr_scheduler: null``). An add-on
(``dens``) names no task and no base: it is applied after a recipe, in a ``base`` list or as a
second ``--config``.

**Cards.** The model card of a published recipe (the :class:`~zoo.callbacks.ExportPretrained`
callback that ``zoo test --export`` runs) is a file of ``cards/``, named after the model, that the
recipe lists in ``trainer.callbacks``: jsonargparse reads a class given as a path from that file,
relative to the recipe. The recipe holds the training, the card what is said about its model.

This module imports nothing else of zoo: the registry finds a card's recipe through it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path, PurePosixPath

import yaml

#: The key under which an overlay names the recipe(s) it is applied on.
BASE = "base"
#: LightningCLI's options that take a config file.
CONFIG_OPTIONS = ("-c", "--config")
#: Suffixes of the files jsonargparse reads as sub-configs, which :func:`references` follows.
YAML_SUFFIXES = (".yaml", ".yml")


class RecipeError(ValueError):
    """A recipe, or the base it names, cannot be found or read."""


class RecipeNotFoundError(RecipeError, FileNotFoundError):
    """Neither a file nor a packaged recipe has this name."""


def folder() -> Path:
    """The folder of the packaged recipes.

    It must be files on disk, as pip installs a package: jsonargparse reads a recipe's base and
    cards by their path, relative to the recipe.
    """
    root = resources.files(__name__)
    if not isinstance(root, Path):
        raise RecipeError(f"zoo's recipes are in {root}, not in a folder of files: install zoo unpacked (pip does)")
    return root


def names(add_ons: bool = True) -> list[str]:
    """The packaged recipes, by the names ``zoo fit --config`` takes; with ``add_ons``, the add-ons too."""
    return sorted(path.stem for path in folder().glob("*.yaml") if add_ons or not is_add_on(path))


def is_add_on(recipe: Path) -> bool:
    """Whether ``recipe`` is an add-on: a file that names no task class and no base, and so runs
    only after a recipe (``--config RECIPE --config dens``, or in an overlay's ``base`` list)."""
    config = read(recipe)
    model = config.get("model")
    return BASE not in config and not (isinstance(model, dict) and "class_path" in model)


def _packaged(name: str) -> Path | None:
    parts = PurePosixPath(name).parts
    if parts[:1] == ("recipes",):  # as the model cards name their recipe
        parts = parts[1:]
    if len(parts) != 1:
        return None
    path = folder() / (parts[0] if parts[0].endswith(".yaml") else parts[0] + ".yaml")
    return path if path.is_file() else None


def find(name: str | Path, relative_to: str | Path | None = None) -> Path:
    """The recipe file ``name`` means: a file that exists (a relative one in ``relative_to``,
    default the working folder), else the packaged recipe of that name.

    Raises:
        RecipeNotFoundError: neither exists.
    """
    given = Path(name).expanduser()
    file = given if relative_to is None else Path(relative_to) / given
    if file.is_file():
        return file
    packaged = _packaged(str(name))
    if packaged is None:
        raise RecipeNotFoundError(f"no file {file} and no packaged recipe {str(name)!r}; `zoo recipes` lists them")
    return packaged


def read(recipe: Path) -> dict:
    """The mapping a recipe file holds."""
    try:
        config = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise RecipeError(f"cannot read recipe {recipe}: {error}") from error
    if not isinstance(config, dict):
        raise RecipeError(f"{recipe}: a recipe is a YAML mapping, got {type(config).__name__}")
    return config


def bases(recipe: Path) -> list[str]:
    """What ``recipe`` names under ``base``, in order (empty for a recipe that varies none)."""
    value = read(recipe).get(BASE)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise RecipeError(f"{recipe}: {BASE} names a recipe or a list of recipes, got {value!r}")


def chain(name: str | Path, relative_to: str | Path | None = None) -> list[Path]:
    """The files ``--config name`` applies, in order: its bases (each after its own), then the recipe."""
    files = _chain(find(name, relative_to), ())
    first = {}
    for file in files:
        first.setdefault(file.resolve(), file)
    return list(first.values())


def _chain(recipe: Path, path: tuple[Path, ...]) -> list[Path]:
    if recipe.resolve() in path:
        raise RecipeError(f"{recipe}: its bases lead back to it ({' -> '.join(map(str, (*path, recipe)))})")
    files = []
    for base in bases(recipe):
        files += _chain(find(base, recipe.parent), (*path, recipe.resolve()))
    return [*files, recipe]


def _is_config_text(value: str) -> bool:
    """``--config`` also takes the config itself as a YAML or JSON string (jsonargparse)."""
    try:
        return isinstance(yaml.safe_load(value), dict)
    except yaml.YAMLError:
        return False


def expand_config_arguments(argv: list[str]) -> list[str]:
    """``argv`` with each ``--config`` of a recipe replaced by a ``--config`` for each file it
    applies (:func:`chain`), by path.

    Raises:
        RecipeNotFoundError: a ``--config`` names no file and no packaged recipe.
    """
    expanded, rest = [], list(argv)
    while rest:
        argument = rest.pop(0)
        option, value = argument, None
        if argument in CONFIG_OPTIONS and rest:
            value = rest.pop(0)
        elif argument.startswith("--config="):
            option, value = "--config", argument.partition("=")[2]
        if value is None:
            expanded.append(argument)
        elif not Path(value).expanduser().is_file() and _is_config_text(value):
            expanded += [option, value]
        else:
            for file in chain(value):
                expanded += [option, str(file)]
    return expanded


def _strings(value) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def references(recipe: Path) -> list[Path]:
    """The files ``recipe`` names: its bases, and the sub-config files it gives as values (cards).

    jsonargparse reads a value where a class is expected as a sub-config file when it names one,
    relative to the recipe: every YAML file a value names next to the recipe counts.
    """
    found = [find(base, recipe.parent) for base in bases(recipe)]
    config = {key: value for key, value in read(recipe).items() if key != BASE}
    found += [recipe.parent / value for value in _strings(config)
              if value.endswith(YAML_SUFFIXES) and (recipe.parent / value).is_file()]
    return list(dict.fromkeys(found))


def cards(recipe: Path) -> list[str]:
    """The names of the models whose card ``recipe`` itself gives (an ``ExportPretrained`` sub-config)."""
    names = []
    for file in references(recipe):
        config = read(file) if file.suffix in YAML_SUFFIXES else {}
        if str(config.get("class_path", "")).endswith("ExportPretrained"):
            names.append(config.get("init_args", {}).get("card", {}).get("name", "?"))
    return names


def _packaged_file(name: str) -> Path:
    """A packaged recipe by name, or any packaged file by its path in the package (``cluster/torchrun.sh``)."""
    recipe = _packaged(name)
    if recipe is not None:
        return recipe
    path = folder() / name
    if not path.is_file() or not path.resolve().is_relative_to(folder().resolve()):
        raise RecipeNotFoundError(f"no packaged recipe or file {name!r}; `zoo recipes` lists them")
    return path


def copy(name: str, destination: str | Path, overwrite: bool = False) -> list[Path]:
    """Copy the packaged recipe (or file) ``name``, and every file it names, recursively, into
    ``destination``, laid out as in the package: the copy runs as it is, and is yours to edit.

    Returns the files written.

    Raises:
        FileExistsError: one of them exists, and not ``overwrite`` (nothing is written then).
    """
    source = _packaged_file(name)
    files, todo = [], [source]
    while todo:
        file = todo.pop(0)
        if file not in files:
            files.append(file)
            todo += references(file) if file.suffix in YAML_SUFFIXES else []
    root = folder()
    targets = {file: Path(destination) / file.relative_to(root) for file in files}
    existing = [str(target) for target in targets.values() if target.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"not overwritten: {', '.join(existing)}")
    for file, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(file, target)
    return list(targets.values())


def summary(recipe: Path) -> str:
    """The first line of the comment that opens ``recipe``."""
    for line in recipe.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if line.lstrip("# ").strip():
            return line.lstrip("# ").strip()
    return ""


def _listing() -> str:
    lines = ["packaged recipes: zoo fit --config NAME; zoo recipes show NAME; zoo recipes copy NAME DEST", ""]
    recipes, add_ons = names(add_ons=False), sorted(set(names()) - set(names(add_ons=False)))
    for name in recipes:
        recipe = folder() / f"{name}.yaml"
        notes = ([f"on {' + '.join(Path(base).stem for base in bases(recipe))}"] if bases(recipe) else [])
        notes += [f"card {card}" for card in cards(recipe)]
        lines += [f"{name}" + (f"  ({'; '.join(notes)})" if notes else ""), f"    {summary(recipe)}"]
    lines += ["", "add-ons: zoo fit --config RECIPE --config NAME", ""]
    lines += [line for name in add_ons for line in (name, f"    {summary(folder() / f'{name}.yaml')}")]
    launch = sorted(path.relative_to(folder()).as_posix() for path in (folder() / "cluster").iterdir())
    lines += ["", f"launch templates (zoo recipes copy NAME DEST): {', '.join(launch)}"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``zoo recipes [list | show NAME | copy NAME [DEST]]``."""
    parser = argparse.ArgumentParser(prog="zoo recipes", description="The training recipes shipped with zoo.")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("list", help="the packaged recipes (the default)")
    show = commands.add_parser("show", help="print a recipe; `zoo fit --config NAME --print_config` merges its bases")
    show.add_argument("name")
    copy_command = commands.add_parser("copy", help="copy a recipe and the files it names (bases, cards)")
    copy_command.add_argument("name")
    copy_command.add_argument("destination", nargs="?", default=".", help="a folder (default: the working folder)")
    copy_command.add_argument("--overwrite", action="store_true", help="replace files that exist")
    args = parser.parse_args(argv)
    try:
        if args.command == "show":
            recipe = _packaged_file(args.name)
            print(f"# {recipe}\n{recipe.read_text(encoding='utf-8')}", end="")
        elif args.command == "copy":
            written = copy(args.name, args.destination, args.overwrite)
            print("\n".join(f"wrote {path}" for path in written))
            if written[0].suffix in YAML_SUFFIXES:
                print(f"run it: zoo fit --config {written[0]}")
        else:
            print(_listing())
    except (RecipeError, FileExistsError) as error:
        print(f"zoo recipes: error: {error}", file=sys.stderr)
        return 1
    return 0
