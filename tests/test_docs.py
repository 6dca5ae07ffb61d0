"""Every snippet of the README and the docs runs as written, or says why it is not run here.

A fenced block in ``README.md`` or ``docs/*.md`` is checked by its language:

- ``python``: the page's Python blocks run in order in one fresh interpreter, sharing their names
  (a block may use what an earlier block of its page made);
- ``bash``: each block runs in ``bash -e -o pipefail``, with ``zoo`` and ``python`` from the
  project's virtual environment on the ``PATH``;
- ``yaml``, ``json``: each block must parse;
- ``text`` (program output, file excerpts): not checked.

Both run in a scratch folder per page that links the checkout's ``data``, ``benchmarks`` and
``.venv`` (so ``data/water/...`` and ``.venv/bin/zoo`` mean what they mean in the checkout; the
recipes come with the package), with the Hub offline: whatever a snippet writes stays out of the
checkout.

A block that cannot run here (hours of DFT, a training run, a GPU, a server) says so with an
HTML comment on the line before its fence, which the rendered page does not show::

    <!-- not run: trains for about 3 minutes -->

A Python or shell block without one is run; a marker without a reason is an error.

A block that shows a whole file a page's commands use (a model module, a recipe) names it with
``<!-- file: NAME -->`` on the line before its fence: it is written to ``NAME`` in the scratch
folder before any block of the page runs, and checked as its language says (Python compiled,
YAML parsed) instead of being run.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: What a snippet may read from the checkout, linked into its scratch folder.
LINKED = ("data", "benchmarks", ".venv")
#: Seconds a page's Python, or one shell block, may take.
TIMEOUT = 120

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+)(?P<language>[\w+-]*)\s*$")
NOT_RUN = re.compile(r"^\s*<!--\s*not run:(?P<reason>.*?)-->\s*$")
FILE = re.compile(r"^\s*<!--\s*file:\s*(?P<name>[\w./-]+?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # of the first line of code, 1-based
    language: str
    code: str
    not_run: str | None  # the marker's reason
    file: str | None = None  # the file the block is, written to the scratch folder

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, with the reason of a ``not run`` marker before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, number = [], 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if not opening:
            number += 1
            continue
        end = number + 1
        closing = re.compile(rf"^ *{opening['fence']}\s*$")
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        before = next((line for line in reversed(lines[:number]) if line.strip()), "")
        marker, file = NOT_RUN.match(before), FILE.match(before)
        code = textwrap.dedent("\n".join(lines[number + 1:end]))
        found.append(Block(page, number + 2, opening["language"].lower(), code,
                           marker["reason"].strip() if marker else None, file["name"] if file else None))
        number = end + 1
    return found


def _scratch(tmp_path: Path) -> Path:
    for name in LINKED:
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


def _environment(scratch: Path) -> dict[str, str]:
    environment = dict(os.environ)
    environment.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",  # no machine here reaches the Hub: the package's copies, without waiting
        "HF_HUB_CACHE": str(scratch / "hf-cache"),
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    })
    return environment


def _run(command: list[str], scratch: Path, what: str, stdin: str | None = None) -> None:
    try:
        result = subprocess.run(command, input=stdin, cwd=scratch, env=_environment(scratch), capture_output=True,
                                text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} ran longer than {TIMEOUT} s: make it cheaper, or mark it <!-- not run: why -->")
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit status {result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")


#: Runs the blocks given as JSON on stdin in one namespace; a traceback names the page and its line.
PYTHON_RUNNER = """
import json, sys
namespace = {"__name__": "__main__"}
for where, first_line, code in json.load(sys.stdin):
    page = where.rsplit(":", 1)[0]
    exec(compile("\\n" * (first_line - 1) + code, page, "exec"), namespace)
"""


def _pages():
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        yield pytest.param(page, id=name)


@pytest.mark.parametrize("page", list(_pages()))
def test_snippets_run_or_say_why_not(page, tmp_path):
    found = blocks(page)
    for block in found:
        assert block.not_run is None or block.not_run, f"{block.where}: a `not run` marker needs its reason"
        if block.not_run is not None:
            continue
        if block.file is not None and block.language == "python":
            compile(block.code, block.where, "exec")
        elif block.language == "yaml":
            yaml.safe_load(block.code)
        elif block.language == "json":
            json.loads(block.code)
    scratch = _scratch(tmp_path)
    for block in found:
        if block.file is not None and block.not_run is None:
            (scratch / block.file).parent.mkdir(parents=True, exist_ok=True)
            (scratch / block.file).write_text(block.code + "\n", encoding="utf-8")
    python = [(b.where, b.line, b.code) for b in found
              if b.language == "python" and b.not_run is None and b.file is None]
    if python:
        _run([sys.executable, "-c", PYTHON_RUNNER], scratch, f"the Python blocks of {page.name}", json.dumps(python))
    for block in found:
        if block.language in ("bash", "sh", "shell", "console") and block.not_run is None and block.file is None:
            _run(["bash", "-e", "-o", "pipefail", "-c", block.code], scratch, f"the shell block at {block.where}")


def test_every_block_names_its_language():
    """A block without a language would be neither run nor exempted by a marker."""
    unnamed = [b.where for page in PAGES for b in blocks(page) if not b.language]
    assert not unnamed, f"fenced blocks without a language (```python, ```bash, ```text, ...): {unnamed}"


def test_markers_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("text\n\n<!-- not run: needs a GPU -->\n```python\nimport torch\n```\n\n```bash\nzoo list\n```\n")
    first, second = blocks(page)
    assert (first.language, first.code, first.not_run, first.line) == ("python", "import torch", "needs a GPU", 5)
    assert (second.language, second.not_run) == ("bash", None)


def test_file_markers_are_read(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("<!-- file: pkg/model.py -->\n```python\nX = 1\n```\n")
    (block,) = blocks(page)
    assert (block.file, block.not_run, block.code) == ("pkg/model.py", None, "X = 1")


@pytest.mark.parametrize("package", ["registry", "publish"])
def test_the_reference_of_a_lazy_package_lists_every_exported_name(package):
    """``zoo.registry`` and ``zoo.publish`` export their names lazily, so their API pages list them
    themselves: kept complete here."""
    exports = importlib.import_module(f"zoo.{package}")._EXPORTS
    listed = {name for line in (ROOT / "docs" / "api" / f"{package}.md").read_text(encoding="utf-8").splitlines()
              if line.strip().startswith("members:")
              for name in line.split("[", 1)[1].rstrip("]").replace(" ", "").split(",")}
    assert listed == set(exports)
