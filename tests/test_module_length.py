"""No module of zoo is longer than :data:`LIMIT` lines without saying why.

A long module is usually two concepts: split it where they part, one concept per file, with
private modules re-exported by the package (as e3nn does). A module that is long for a reason
states it in a line of its module docstring that starts with ``Long because``.
"""

import ast
from pathlib import Path


ZOO = Path(__file__).resolve().parents[1] / "zoo"
LIMIT = 400
REASON = "Long because"

#: Long modules still without a split or a reason, each with why; an entry goes when its module is fixed.
PENDING: dict[str, str] = {}


def long_modules_without_reason() -> dict[str, int]:
    """``{module: lines}`` for the modules of zoo over :data:`LIMIT` lines whose docstring gives no reason."""
    found = {}
    for path in sorted(ZOO.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        length = len(text.splitlines())
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if length > LIMIT and not any(line.strip().startswith(REASON) for line in docstring.splitlines()):
            found[str(path.relative_to(ZOO.parent))] = length
    return found


def test_a_long_module_says_why():
    unexplained = {name: length for name, length in long_modules_without_reason().items() if name not in PENDING}
    assert not unexplained, (f"modules over {LIMIT} lines: {unexplained}. Split each where its concepts part, or "
                             f"say why not in a docstring line starting {REASON!r}")


def test_every_pending_module_is_still_long_without_a_reason():
    fixed = sorted(set(PENDING) - set(long_modules_without_reason()))
    assert not fixed, f"remove from PENDING, now split, explained or gone: {fixed}"
