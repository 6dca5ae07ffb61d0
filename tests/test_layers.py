"""The floor plan of DESIGN.md: each layer imports only from the layers below it.

``zoo.qc`` (physics) is the bottom; ``zoo.data`` sits on it; ``zoo.datagen`` (the workflow that
makes data) on both. The publishing tools (``zoo.publish``) sit beside the registry, off the runtime
path: only the ``zoo`` command reaches them. Checked on the source, so that a lazy import inside a
function counts too.
"""

import ast
from pathlib import Path

import pytest

ZOO = Path(__file__).resolve().parents[1] / "zoo"


def imported_packages(package: str) -> dict[str, set[str]]:
    """``{module file: {zoo subpackages it imports}}`` for every module of ``zoo.<package>``."""
    found = {}
    for path in sorted((ZOO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "zoo":
                names.update(f"zoo.{alias.name}" for alias in node.names)  # from zoo import registry
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
        found[str(path.relative_to(ZOO.parent))] = {name.split(".")[1] for name in names
                                                      if name.startswith("zoo.")}
    return found


@pytest.mark.parametrize("package, allowed", [
    ("qc", {"qc"}),
    ("data", {"data", "qc"}),
    ("datagen", {"datagen", "data", "qc", "_files"}),
    # losses sit between the models and the tasks; DeNS is one of them, so it never reaches a task
    ("losses", {"losses", "models", "nn", "metrics", "data", "qc"}),
    ("dens", {"dens", "losses", "models", "nn", "metrics", "data", "qc"}),
    # publishing sits beside the registry and builds on it alone
    ("publish", {"publish", "registry"}),
])
def test_a_layer_imports_only_itself_and_the_layers_below(package, allowed):
    upward = {module: sorted(names - allowed) for module, names in imported_packages(package).items()
              if names - allowed}
    assert not upward, f"zoo.{package} imports from layers above it: {upward}"


def test_nothing_on_the_runtime_path_imports_the_publishing_tools():
    """zoo.registry (loading) and everything above it never carry the mirror server and push tools;
    the `zoo hub` command reaches them by name (``zoo.cli.TOOLS``)."""
    importers = sorted(module for module, names in imported_packages(".").items()
                       if "publish" in names and not module.startswith("zoo/publish/"))
    assert not importers, f"modules outside zoo.publish import it: {importers}"
