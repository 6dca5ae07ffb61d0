"""The checks of the manifest's fields (:mod:`zoo.registry._manifest`).

Each checker takes a value read from JSON and returns it, normalised, or raises :class:`Invalid`
saying what was expected; :func:`field` attaches a checker to a dataclass field and :func:`parse`
builds a dataclass from JSON through the checkers of its fields, turning an :class:`Invalid` into a
:class:`~zoo.registry.ManifestError` that names the entry and the field.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import MISSING

from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from zoo.qc.level import LevelOfTheory
from zoo.registry._errors import ManifestError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
RECIPE = re.compile(r"^[\w./-]+\.ya?ml$")


class Invalid(ValueError):
    """A field's value is wrong; the parser adds which entry and field."""


def text(value):
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"expected a non-empty string, got {value!r}")
    return value


def model_name(value):
    if not isinstance(value, str) or not NAME.match(value):
        raise Invalid(f"expected lowercase letters, digits, '.', '_' or '-' (e.g. 'qm9-u0-demo'), got {value!r}")
    return value


def license_id(value):
    if text(value) != value.lower():
        raise Invalid(f"expected a lowercase Hub license id such as 'mit' or 'apache-2.0', got {value!r}")
    return value


def element_symbols(value):
    if not isinstance(value, list) or not value:
        raise Invalid(f"expected a non-empty list of element symbols, got {value!r}")
    unknown = [e for e in value if not isinstance(e, str) or e not in _ATOMIC_NUMBERS or e == "X"]
    if unknown:
        raise Invalid(f"unknown element symbols {unknown}; use symbols such as 'H', 'C', 'O'")
    if len(set(value)) != len(value):
        raise Invalid(f"repeated elements in {value}")
    return sorted(value, key=_ATOMIC_NUMBERS.__getitem__)


def string_map(value, what="units"):
    if not isinstance(value, dict) or not value:
        raise Invalid(f"expected a non-empty object of {what}, got {value!r}")
    bad = {k: v for k, v in value.items() if not isinstance(v, str) or not v}
    if bad:
        raise Invalid(f"expected string values, got {bad}")
    return dict(value)


def record(spec: dict[str, tuple]):
    """A checker for a nested object: ``spec`` maps each key to ``(checker, required)``."""

    def check(value):
        if not isinstance(value, dict):
            raise Invalid(f"expected an object with keys {sorted(spec)}, got {value!r}")
        unknown = sorted(set(value) - set(spec))
        if unknown:
            raise Invalid(f"unknown keys {unknown}; allowed: {sorted(spec)}")
        out = {}
        for key, (checker, required) in spec.items():
            if key not in value:
                if required:
                    raise Invalid(f"missing key {key!r}")
                continue
            try:
                out[key] = checker(value[key])
            except Invalid as error:
                raise Invalid(f"key {key!r}: {error}") from None
        return out

    return check


def positive_int(value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Invalid(f"expected a positive integer, got {value!r}")
    return value


def byte_size(value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Invalid(f"expected a size in bytes (integer >= 0), got {value!r}")
    return value


def level_of_theory(value):
    # xc and basis are what the labels were computed with: never left to a default
    if not isinstance(value, dict):
        raise Invalid(f"expected an object with the fields of a level of theory, got {value!r}")
    missing = [key for key in ("xc", "basis") if key not in value]
    if missing:
        raise Invalid(f"missing key {missing[0]!r}")
    try:
        return LevelOfTheory.from_dict(value)
    except (TypeError, ValueError) as error:
        raise Invalid(str(error)) from None


def number_map(value):
    if not isinstance(value, dict) or not value:
        raise Invalid(f"expected a non-empty object of metric values, got {value!r}")
    bad = {k: v for k, v in value.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if bad:
        raise Invalid(f"expected numbers, got {bad}")
    return dict(value)


def recipe_path(value):
    # `zoo verify` reads the recipe a card names: a packaged one, or a file inside the folder it runs in
    if (not isinstance(value, str) or not RECIPE.match(value) or value.startswith("/")
            or ".." in value.split("/")):
        raise Invalid(f"expected a YAML path as `zoo fit --config` takes it (e.g. 'recipes/x.yaml' for the packaged "
                      f"recipe x, or a file relative to the working folder; no '..', no absolute path), got {value!r}")
    return value


def tag_list(value):
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise Invalid(f"expected a list of strings, got {value!r}")
    return list(value)


def matching(regex: re.Pattern, what: str):
    def check(value):
        if not isinstance(value, str) or not regex.match(value):
            raise Invalid(f"expected {what}, got {value!r}")
        return value

    return check


def version_specifier(value):
    try:
        SpecifierSet(text(value))
    except InvalidSpecifier:
        raise Invalid(f"expected a version specifier such as '>=0.1,<0.3', got {value!r}") from None
    return value


TRAINING_DATA = record({"dataset": (text, True), "size": (positive_int, False), "description": (text, False)})
METRICS = record({"split": (text, True), "values": (number_map, True)})


def field(checker, default=MISSING, default_factory=MISSING):
    """A dataclass field whose JSON value :func:`parse` passes through ``checker``."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={"check": checker})


def check_given(cls, data, where: str) -> dict:
    """The fields ``data`` gives, each through its checker (unknown fields refused), without
    requiring the others: a part of a record checked before the rest exists (a recipe's model
    card before its test metrics)."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    values = {}
    for name, value in data.items():
        if value is None:
            continue
        try:
            values[name] = known[name].metadata["check"](value)
        except Invalid as error:
            raise ManifestError(f"{where}: field {name!r}: {error}") from None
    return values


def parse(cls, data, where: str):
    """An instance of the dataclass ``cls`` from JSON ``data``, each field through its checker;
    ``where`` names the data in the :class:`~zoo.registry.ManifestError`."""
    values = check_given(cls, data, where)
    for f in dataclasses.fields(cls):
        if f.name not in values and f.default is MISSING and f.default_factory is MISSING:
            raise ManifestError(f"{where}: field {f.name!r} is missing")
    try:
        return cls(**values)
    except Invalid as error:
        raise ManifestError(f"{where}: {error}") from None
