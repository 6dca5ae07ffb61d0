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
  spectra and MD stability of any torch model or ASE calculator), ``_files`` (atomic writes),
  ``_lazy`` (the lazy re-exports of the registry and the publishing tools), ``_allocator`` (glibc's
  allocator tuned for training, applied by the ``zoo`` command), ``_signals`` (stop signals as
  interrupts, for the commands that run long), ``_lightning_noise`` (Lightning's warnings about its
  own code, filtered wherever zoo builds a Trainer) and ``recipes`` (the packaged
  training recipes, found by name; the registry reads a card's recipe through it): they import
  nothing of zoo.

DESIGN.md draws ``data | qc`` on one row; ``data`` reads the level of theory and AO conventions of
``qc``, so here they are two.
"""

import ast
from pathlib import Path

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
    ("qc", "analysis", "_files", "_lazy", "_allocator", "_signals", "_lightning_noise", "recipes"),
)
ROW = {part: row for row, parts in enumerate(LAYERS) for part in parts}

#: Modules that still import from above, each with what moves it; an entry goes when its cause does.
PENDING: dict[str, str] = {}


#: The parts of zoo: its subpackages and top-level modules.
PARTS = ({path.parent.name for path in ZOO.glob("*/__init__.py")}
         | {path.stem for path in ZOO.glob("*.py") if path.name != "__init__.py"})


def part_of(path: Path) -> str:
    """The part of zoo a module file belongs to (``registry`` for the package root)."""
    relative = path.relative_to(ZOO)
    if relative == Path("__init__.py"):
        return "registry"
    return relative.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    """The parts of zoo that the module at ``path`` imports, anywhere in it."""
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
                found.add(part if part in PARTS else "registry")  # the root re-exports the registry
    return found


def test_every_part_of_zoo_has_a_layer():
    placed = set(ROW)
    assert PARTS - placed == set(), "place these parts of zoo in LAYERS (and say why in this file's docstring)"
    assert placed - PARTS == set(), "LAYERS names parts zoo no longer has"


def imports_from_above() -> dict[str, list[str]]:
    """``{module file: [parts of zoo it imports from its own row or above]}``, for the modules that do."""
    found = {}
    for path in sorted(ZOO.rglob("*.py")):
        own = part_of(path)
        if own not in ROW:  # test_every_part_of_zoo_has_a_layer names it
            continue
        above = sorted(part for part in imported_parts(path) - {own} if ROW.get(part, -1) <= ROW[own])
        if above:
            found[str(path.relative_to(ZOO.parent))] = above
    return found


def test_a_module_imports_only_its_part_and_the_layers_below():
    upward = {module: above for module, above in imports_from_above().items() if module not in PENDING}
    assert not upward, f"modules importing from their own row of LAYERS or above: {upward}"


def test_every_pending_module_still_imports_from_above():
    fixed = sorted(set(PENDING) - set(imports_from_above()))
    assert not fixed, f"remove from PENDING, now fixed or gone: {fixed}"


def test_nothing_on_the_runtime_path_imports_the_publishing_tools():
    """zoo.registry (loading) and everything above it never carry the mirror server and push tools;
    the `zoo hub` command reaches them by name (``zoo.cli.TOOLS``)."""
    importers = sorted(str(path.relative_to(ZOO.parent)) for path in ZOO.rglob("*.py")
                       if "publish" in imported_parts(path) and part_of(path) != "publish")
    assert not importers, f"modules outside zoo.publish import it: {importers}"
