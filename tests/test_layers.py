"""The floor plan of DESIGN.md: every part of zoo imports only from itself and the layers below it.

Checked on the source, so that a lazy import inside a function counts too. A *part* is a subpackage
or a top-level module of ``zoo/``; the package root (``zoo/__init__.py``, and ``import zoo`` or
``from zoo import __version__`` anywhere) counts as the registry, whose ``load``, ``list_models``
and ``download`` it re-exports. Parts on one row of :data:`LAYERS` sit beside each other and do not
import each other. Top to bottom:

- ``tour`` runs the ``zoo`` command's training (``zoo.cli.lightning_main``), so it sits above it.
- ``cli``: the ``zoo`` command. It reaches the tools of its subcommands (``zoo hub``, ``zoo select``,
  ``zoo label``, ...) by name (``zoo.cli.TOOLS``), not by import.
- ``interfaces`` (the ASE calculator's public name), ``selection`` (choosing what to label with a
  loaded model's features), ``publish`` (mirror server and push, beside the registry but off the
  runtime path: nothing below imports it, second test), ``testing`` (equivariance checks of a
  model) and ``_lightning_cli`` (the command's LightningCLI): uses of trained models and the
  command's machinery.
- ``tasks`` and ``callbacks``: a callback acts on a task through Lightning's hooks, so neither
  imports the other; the callbacks use the analysis (Hessian spectrum), the losses and models they
  measure and the registry (export).
- ``dens``: DeNS is an auxiliary loss with its own head and encodings, owned by the force-field task.
- ``losses``: masked outputs, metrics on them and the auxiliary-loss interface, on the models.
- ``models``: backbones and heads, rescale modules, the inference interfaces (``Predictor`` and
  its ASE calculator, ``StructureGenerator``).
- ``nn``: the e3nn building blocks.
- ``registry`` (loading, cache, integrity), ``datagen`` (sampling, labelling, jobs) and ``metrics``
  (physics-aware errors), each on the data. The registry reaches the models and tasks it loads only
  by the class paths of a checkpoint's config (after the trust check), never by import, so the
  tasks (``pretrained=``), the callbacks (``ExportPretrained``) and ``selection`` may use it.
- ``data``: AtomicData, keys, readers, splits.
- ``qc`` (the physics: level of theory, AO conventions, Fock, eigh, guess), ``analysis`` (Hessian
  spectra and MD stability of any torch model or ASE calculator) and ``_files`` (atomic writes):
  they import nothing of zoo.

DESIGN.md draws ``data | qc`` on one row; ``data`` reads the level of theory and AO conventions of
``qc``, so here they are two.
"""

import ast
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"

#: Rows of parts, top to bottom; a part may import the parts of the rows below its own.
LAYERS = (
    ("tour",),
    ("cli",),
    ("interfaces", "selection", "publish", "testing", "_lightning_cli"),
    ("tasks", "callbacks"),
    ("dens",),
    ("losses",),
    ("models",),
    ("nn",),
    ("registry", "datagen", "metrics"),
    ("data",),
    ("qc", "analysis", "_files"),
)
ROW = {part: row for row, parts in enumerate(LAYERS) for part in parts}

#: Modules that still import from above, each with what moves it; strict, so that the entry goes when its cause does.
PENDING = {
    "zoo/qc/guess.py": "model_guess loads a model by name (zoo.load): it belongs in zoo.interfaces (DESIGN.md's "
                       "PySCF guess), a move that changes zoo/tour.py's import of it, a file being edited elsewhere",
}


def parts() -> set[str]:
    """The subpackages and top-level modules of ``zoo/``."""
    return ({path.parent.name for path in ZOO.glob("*/__init__.py")}
            | {path.stem for path in ZOO.glob("*.py") if path.name != "__init__.py"})


def part_of(path: Path) -> str:
    """The part of zoo a module file belongs to (``registry`` for the package root)."""
    relative = path.relative_to(ZOO)
    if relative == Path("__init__.py"):
        return "registry"
    return relative.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    """The parts of zoo that the module at ``path`` imports, anywhere in it."""
    known = parts()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: a relative import; zoo imports absolutely")
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "zoo":
            names = [f"zoo.{alias.name}" for alias in node.names]  # from zoo import registry / __version__
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        else:
            continue
        for name in names:
            if name == "zoo" or name.startswith("zoo."):
                part = name.split(".")[1] if "." in name else None
                found.add(part if part in known else "registry")  # the root re-exports the registry
    return found


def imported_packages(package: str) -> dict[str, set[str]]:
    """``{module file: {zoo parts it imports}}`` for every module under ``zoo/<package>``."""
    return {str(path.relative_to(ZOO.parent)): imported_parts(path) for path in sorted((ZOO / package).rglob("*.py"))}


def test_every_part_of_zoo_has_a_layer():
    placed = set(ROW)
    assert parts() - placed == set(), "place these parts of zoo in LAYERS (and say why in this file's docstring)"
    assert placed - parts() == set(), "LAYERS names parts zoo no longer has"


def _modules():
    for path in sorted(ZOO.rglob("*.py")):
        name = str(path.relative_to(ZOO.parent))
        marks = [pytest.mark.xfail(strict=True, reason=PENDING[name])] if name in PENDING else []
        yield pytest.param(path, id=name, marks=marks)


@pytest.mark.parametrize("path", list(_modules()))
def test_a_module_imports_only_its_part_and_the_layers_below(path):
    own = part_of(path)
    above = sorted(part for part in imported_parts(path) - {own} if ROW[part] <= ROW[own])
    assert not above, f"{path.relative_to(ZOO.parent)} (zoo.{own}) imports from its own row or above: {above}"


def test_nothing_on_the_runtime_path_imports_the_publishing_tools():
    """zoo.registry (loading) and everything above it never carry the mirror server and push tools;
    the `zoo hub` command reaches them by name (``zoo.cli.TOOLS``)."""
    importers = sorted(module for module, names in imported_packages(".").items()
                       if "publish" in names and not module.startswith("zoo/publish/"))
    assert not importers, f"modules outside zoo.publish import it: {importers}"
