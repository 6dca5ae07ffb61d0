"""Names a package re-exports from its private modules, imported on first use (PEP 562).

So that importing the package stays cheap: ``zoo list`` (:mod:`zoo.registry`) and ``zoo hub serve``
(:mod:`zoo.publish`) do not import torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` whose names ``exports`` maps to the
    private module, under ``package``, that defines each; a name, once imported, is an attribute
    of the package."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
