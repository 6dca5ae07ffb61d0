"""What a checkpoint's ``config.json`` may make zoo import: the allow-list, in one place.

A task is built from its config by jsonargparse, which imports whatever a config names: every
``class_path``, a string where a class or a callable is expected (``"optimizer": "pkg.make"``), a
string holding YAML, even a file the string names (read as a further config). Importing a module
runs its code, so a config from a download must not name anything outside code zoo already
trusts. Before jsonargparse sees a config, :func:`check_trusted` finds every string in it that
could name code and lets through only

- zoo's own classes: ``zoo.…`` paths whose modules are files of the installed zoo package and
  that resolve to a class defined there;
- torch's optimizers (``torch.optim.*``) and learning-rate schedulers
  (``torch.optim.lr_scheduler.*``), resolved the same way and checked to be such classes;
- the module prefixes the caller trusts (``trusted_modules=("mylab",)``).

The resolution is checked, not just the prefix, since a path such as
``torch.optim.optimizer.torch.load`` reaches any object a trusted module imported. The string
values of arguments typed ``str`` (or ``str | None``) of a listed class are left alone:
jsonargparse takes them as they are. ``trust_remote_code=True`` (the name Hugging Face uses)
lifts the check: the config may then run any code it names.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from zoo.registry._errors import UntrustedCodeError

ZOO_PACKAGE = Path(__file__).resolve().parents[1]

_OPT_IN = ("If you trust the code it names, pass trust_remote_code=True (zoo.load, load_pretrained, "
           "instantiate_task), or trusted_modules=('<package>',) to trust that package alone; see docs/security.md")


class _Refused(Exception):
    """Why a class path is not trusted; :func:`_check_reference` adds where it was found."""


def _is_dotted(value: str) -> bool:
    parts = value.split(".")
    return len(parts) > 1 and all(part.isidentifier() for part in parts)


def _resolve(path: str, package: str, root: Path | None) -> Any:
    """What ``path`` names, found as jsonargparse finds it: the longest module prefix, then attributes.

    With a ``root``, every module on the way must be a file under it, checked before it is imported.
    None if there is no such object (a checkpoint from a newer zoo: building it fails on its own).
    """
    parts = path.split(".")
    module = package
    for end in range(package.count(".") + 2, len(parts)):
        name = ".".join(parts[:end])
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):  # the parent is a module, not a package: the rest are attributes
            spec = None
        if spec is None:
            break
        if root is not None and (spec.origin is None or not Path(spec.origin).resolve().is_relative_to(root)):
            raise _Refused(f"module {name} is not a file of the installed {package} ({spec.origin or 'no file'})")
        module = name
    try:
        found = importlib.import_module(module)
    except ImportError:
        return None
    for attribute in parts[module.count(".") + 1:]:
        if not hasattr(found, attribute):
            return None
        found = getattr(found, attribute)
    return found


def _class_within(path: str, package: str, root: Path) -> type | None:
    """The class ``path`` names, if it is defined in ``package`` (whose files lie under ``root``)."""
    found = _resolve(path, package, root)
    if found is None:
        return None
    if not inspect.isclass(found):
        raise _Refused(f"it is a {type(found).__name__}, not a class")
    try:
        source = Path(inspect.getfile(found)).resolve()
    except TypeError:  # built-in classes have no file
        source = None
    if source is None or not source.is_relative_to(root):
        raise _Refused(f"it resolves to {found.__module__}.{found.__qualname__}, defined outside {package}")
    return found


def _torch_optim_class(path: str) -> type | None:
    import torch

    found = _class_within(path, "torch.optim", Path(torch.optim.__file__).resolve().parent)
    if found is not None and not issubclass(found, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
        raise _Refused("only torch.optim optimizers and learning-rate schedulers are trusted")
    return found


def _trusted_class(value: Any, trusted_modules: Sequence[str]) -> type | None:
    """The class ``value`` names if the allow-list has it (None: no such class yet); else raise :class:`_Refused`."""
    if isinstance(value, str) and os.path.isfile(os.path.expanduser(value)):
        raise _Refused("it names a file, which jsonargparse would read as a further config; a checkpoint's "
                       "config must be self-contained")
    if not isinstance(value, str) or not _is_dotted(value):
        raise _Refused("a class path is a dotted Python name such as 'zoo.models.PropertyModel'")
    for prefix in trusted_modules:
        if value == prefix or value.startswith(prefix + "."):
            found = _resolve(value, prefix, None)
            return found if inspect.isclass(found) else None
    if value.startswith("zoo."):
        return _class_within(value, "zoo", ZOO_PACKAGE)
    if value.startswith("torch.optim."):
        return _torch_optim_class(value)
    raise _Refused("zoo builds only its own classes and torch.optim's optimizers and schedulers")


def _plain_string_arguments(cls: type) -> frozenset[str]:
    """The init arguments of ``cls`` typed ``str`` or ``str | None``: jsonargparse takes their values
    as they are (a path, a registry name), never as a class, a YAML document or a file to read."""
    try:
        parameters = inspect.signature(cls, eval_str=True).parameters
    except (NameError, TypeError, ValueError):  # annotations that do not evaluate: check every value
        return frozenset()
    return frozenset(name for name, parameter in parameters.items() if _is_plain_string(parameter.annotation))


def _is_plain_string(annotation: Any) -> bool:
    if annotation is str:
        return True
    return (typing.get_origin(annotation) in (typing.Union, types.UnionType)
            and set(typing.get_args(annotation)) == {str, type(None)})


def _is_class_path_key(key: Any) -> bool:
    # jsonargparse reads a key "model.class_path" as "class_path" nested under "model"
    return isinstance(key, str) and key.rsplit(".", 1)[-1] == "class_path"


def _check_reference(value: Any, where: str, trusted_modules: Sequence[str]) -> type | None:
    try:
        return _trusted_class(value, trusted_modules)
    except _Refused as why:
        raise UntrustedCodeError(f"{where} names {value!r}, which zoo will not import: {why}. {_OPT_IN}") from None


def _check_node(node: Any, where: str, trusted_modules: Sequence[str], strings: bool) -> None:
    """Check every value in ``node`` that jsonargparse could import or read (module docstring)."""
    if isinstance(node, dict):
        plain: frozenset[str] = frozenset()
        for key, value in node.items():
            if _is_class_path_key(key):
                found = _check_reference(value, f"{where}.{key}", trusted_modules)
                if key == "class_path" and found is not None:
                    plain = _plain_string_arguments(found)
        for key, value in node.items():
            if _is_class_path_key(key):
                continue
            if key == "init_args" and isinstance(value, dict):
                for name, argument in value.items():
                    if not (name in plain and isinstance(argument, str)):
                        _check_node(argument, f"{where}.init_args.{name}", trusted_modules, strings)
            else:
                _check_node(value, f"{where}.{key}", trusted_modules, strings)
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            _check_node(value, f"{where}[{index}]", trusted_modules, strings)
    elif isinstance(node, str) and strings:
        if os.path.isfile(os.path.expanduser(node)):
            _check_reference(node, where, trusted_modules)
        try:  # where an argument is not a plain string, jsonargparse parses the string as YAML
            parsed = yaml.safe_load(node)
        except yaml.YAMLError:
            parsed = node
        if isinstance(parsed, (dict, list)):
            _check_node(parsed, f"{where} (YAML in a string)", trusted_modules, strings)
        elif _is_dotted(node):
            _check_reference(node, where, trusted_modules)


def _check_prefixes(trusted_modules: Sequence[str]) -> tuple[str, ...]:
    if isinstance(trusted_modules, str):
        trusted_modules = (trusted_modules,)
    bad = [p for p in trusted_modules if not isinstance(p, str) or not all(s.isidentifier() for s in p.split("."))]
    if bad:
        raise ValueError(f"trusted_modules must be dotted module names such as 'mylab.models', got {bad}")
    return tuple(trusted_modules)


def check_trusted(config: Any, where: str, trust_remote_code: bool = False, trusted_modules: Sequence[str] = (),
                  strings: bool = True) -> None:
    """Raise :class:`UntrustedCodeError` if ``config`` names code outside the allow-list.

    Deciding imports nothing outside the allow-list.

    Args:
        where: names the config in the message.
        trust_remote_code: accept anything (the config may then run any code it names).
        trusted_modules: module prefixes to trust besides zoo and torch.optim, e.g. ``("mylab",)``.
        strings: check every string that could name code, besides the ``class_path`` entries
            (False for a config jsonargparse has parsed already: it holds the defaults of the
            classes it names, which are code).
    """
    if not trust_remote_code:
        _check_node(config, where, _check_prefixes(trusted_modules), strings)
