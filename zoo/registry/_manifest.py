"""``checkpoints.json``: every published model, pinned by Hub commit and by the sha256 of each file.

The schema is the two dataclasses below: :class:`ModelInfo` (what a model is: the metadata a
checkpoint's ``config.json`` carries) and :class:`ModelEntry` (a published model: that metadata
plus where it lives on the Hub and the hashes that pin it). Every field is checked when read; a
malformed manifest is a :class:`ManifestError` naming the entry and the field. docs/registry.md
documents each field.

This module imports no torch, so that ``zoo list`` stays fast.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ase.data import atomic_numbers as _ATOMIC_NUMBERS
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from zoo.qc.level import LevelOfTheory
from zoo.registry._errors import CheckpointFormatError, ManifestError, ModelNotFoundError

MANIFEST_FORMAT = "zoo-manifest"
#: The version this zoo writes; it reads every version up to it (zoo/registry/CHANGELOG.md).
MANIFEST_VERSION = 3
#: The first manifest version whose ``level_of_theory`` is a :class:`LevelOfTheory`'s fields.
_LEVEL_FIELDS_SINCE = 3

#: The model families; a manifest entry names one.
FAMILIES = ("property", "force-field", "hamiltonian", "consistency")

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
#: The files of a model's Hub repo, and nothing else: the "exact folder" that is published.
HUB_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)

#: Published model folders shipped inside the package (``zoo/_hub/<name>/``), with a copy of the manifest.
PACKAGE_HUB_DIR = Path(__file__).resolve().parent.parent / "_hub"
PACKAGE_MANIFEST = PACKAGE_HUB_DIR / "checkpoints.json"
#: The manifest of a source checkout (the repository root), which the package copy mirrors.
CHECKOUT_MANIFEST = PACKAGE_HUB_DIR.parent.parent / "checkpoints.json"

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_RECIPE = re.compile(r"^[\w./-]+\.ya?ml$")


class _Invalid(ValueError):
    """A field's value is wrong; the parser adds which entry and field."""


# ---------------------------------------------------------------------------------------------
# field checkers: each returns the (normalised) value or raises _Invalid


def _text(value):
    if not isinstance(value, str) or not value.strip():
        raise _Invalid(f"expected a non-empty string, got {value!r}")
    return value


def _name(value):
    if not isinstance(value, str) or not _NAME.match(value):
        raise _Invalid(f"expected lowercase letters, digits, '.', '_' or '-' (e.g. 'qm9-u0-demo'), got {value!r}")
    return value


def _family(value):
    if value not in FAMILIES:
        raise _Invalid(f"expected one of {list(FAMILIES)}, got {value!r}")
    return value


def _license(value):
    if _text(value) != value.lower():
        raise _Invalid(f"expected a lowercase Hub license id such as 'mit' or 'apache-2.0', got {value!r}")
    return value


def _elements(value):
    if not isinstance(value, list) or not value:
        raise _Invalid(f"expected a non-empty list of element symbols, got {value!r}")
    unknown = [e for e in value if not isinstance(e, str) or e not in _ATOMIC_NUMBERS or e == "X"]
    if unknown:
        raise _Invalid(f"unknown element symbols {unknown}; use symbols such as 'H', 'C', 'O'")
    if len(set(value)) != len(value):
        raise _Invalid(f"repeated elements in {value}")
    return sorted(value, key=_ATOMIC_NUMBERS.__getitem__)


def _string_map(value, what="units"):
    if not isinstance(value, dict) or not value:
        raise _Invalid(f"expected a non-empty object of {what}, got {value!r}")
    bad = {k: v for k, v in value.items() if not isinstance(v, str) or not v}
    if bad:
        raise _Invalid(f"expected string values, got {bad}")
    return dict(value)


def _record(spec: dict[str, tuple]):
    """A checker for a nested object: ``spec`` maps each key to ``(checker, required)``."""

    def check(value):
        if not isinstance(value, dict):
            raise _Invalid(f"expected an object with keys {sorted(spec)}, got {value!r}")
        unknown = sorted(set(value) - set(spec))
        if unknown:
            raise _Invalid(f"unknown keys {unknown}; allowed: {sorted(spec)}")
        out = {}
        for key, (checker, required) in spec.items():
            if key not in value:
                if required:
                    raise _Invalid(f"missing key {key!r}")
                continue
            try:
                out[key] = checker(value[key])
            except _Invalid as error:
                raise _Invalid(f"key {key!r}: {error}") from None
        return out

    return check


def _positive_int(value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise _Invalid(f"expected a positive integer, got {value!r}")
    return value


def _size(value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Invalid(f"expected a size in bytes (integer >= 0), got {value!r}")
    return value


def _level_of_theory(value):
    # xc and basis are what the labels were computed with: never left to a default
    if not isinstance(value, dict):
        raise _Invalid(f"expected an object with the fields of a level of theory, got {value!r}")
    missing = [key for key in ("xc", "basis") if key not in value]
    if missing:
        raise _Invalid(f"missing key {missing[0]!r}")
    try:
        return LevelOfTheory.from_dict(value)
    except (TypeError, ValueError) as error:
        raise _Invalid(str(error)) from None


def upgrade_level_of_theory(card: Any) -> Any:
    """A card's ``level_of_theory`` of checkpoint format 1 (manifest formats 1 and 2),
    ``{"xc", "basis", "grid", "code"}``, as the fields of a :class:`LevelOfTheory`.

    ``xc="hf"`` is Hartree–Fock. ``code`` may name a version (``"pyscf 2.14"``), which a level of
    theory does not hold. Without an integer ``grid``, a PySCF level has PySCF's default grid (3)
    and another code's its own (no PySCF grid). Anything else is returned as it is, for the
    schema to report.
    """
    if not isinstance(card, dict) or not isinstance(card.get("xc"), str):
        return card
    code = str(card.get("code") or "pyscf").split()[0].lower()
    hf = card["xc"].lower() == "hf"
    level = {"method": "rhf" if hf else "rks", "xc": None if hf else card["xc"], "basis": card.get("basis"),
             "code": code}
    grid = card.get("grid")
    if isinstance(grid, int) and not isinstance(grid, bool):
        level["grid_level"] = grid
    elif code != "pyscf":
        level["grid_level"] = None
    return level


def _number_map(value):
    if not isinstance(value, dict) or not value:
        raise _Invalid(f"expected a non-empty object of metric values, got {value!r}")
    bad = {k: v for k, v in value.items() if isinstance(v, bool) or not isinstance(v, (int, float))}
    if bad:
        raise _Invalid(f"expected numbers, got {bad}")
    return dict(value)


def _recipe(value):
    # `zoo verify` reads the recipe a card names: it must stay inside the repository
    if (not isinstance(value, str) or not _RECIPE.match(value) or value.startswith("/")
            or ".." in value.split("/")):
        raise _Invalid(f"expected a YAML path inside the repository, relative to its root (e.g. 'recipes/x.yaml'; "
                       f"no '..', no absolute path), got {value!r}")
    return value


def _tags(value):
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        raise _Invalid(f"expected a list of strings, got {value!r}")
    return list(value)


def _pattern(regex: re.Pattern, what: str):
    def check(value):
        if not isinstance(value, str) or not regex.match(value):
            raise _Invalid(f"expected {what}, got {value!r}")
        return value

    return check


def _files(value):
    if not isinstance(value, dict):
        raise _Invalid(f"expected an object mapping file names to {{sha256, size}}, got {value!r}")
    missing = [f for f in HUB_FILES if f not in value]
    if missing:
        raise _Invalid(f"missing {missing}; a model repo has {list(HUB_FILES)}")
    # names become paths in the cache, the package copy and the published folder: no other name
    unknown = sorted(set(value) - set(HUB_FILES))
    if unknown:
        raise _Invalid(f"unknown files {unknown}; a model repo has exactly {list(HUB_FILES)}, plain names in its root")
    check = _record({"sha256": (_pattern(_SHA256, "64 lowercase hex digits"), True), "size": (_size, True)})
    out = {}
    for name, entry in value.items():
        try:
            out[name] = FileEntry(**check(entry))
        except _Invalid as error:
            raise _Invalid(f"file {name!r}: {error}") from None
    return out


def _specifier(value):
    try:
        SpecifierSet(_text(value))
    except InvalidSpecifier:
        raise _Invalid(f"expected a version specifier such as '>=0.1,<0.3', got {value!r}") from None
    return value


_TRAINING_DATA = _record({"dataset": (_text, True), "size": (_positive_int, False), "description": (_text, False)})
_METRICS = _record({"split": (_text, True), "values": (_number_map, True)})


def _check(checker, default=MISSING, default_factory=MISSING):
    return field(default=default, default_factory=default_factory, metadata={"check": checker})


# ---------------------------------------------------------------------------------------------
# schema


@dataclass(frozen=True)
class FileEntry:
    """A pinned file: its sha256 (hex) and size in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What a model is. Written into a checkpoint's ``config.json`` and rendered into its card.

    Attributes:
        name: registry name (lowercase, digits, ``.``, ``_``, ``-``).
        family: one of :data:`FAMILIES`.
        license: Hub license id (``"mit"``, ``"apache-2.0"``, ``"cc-by-4.0"``, ...).
        elements: symbols of the elements the model was trained on (sorted by atomic number).
        units: unit of each quantity, e.g. ``{"positions": "Å", "energy": "eV"}``.
        architecture: e.g. ``"PropertyModel(EquivariantBackbone)"``; inferred from the task
            config by :func:`~zoo.registry.save_pretrained` when left out.
        description: one paragraph for the model card.
        level_of_theory: the :class:`~zoo.qc.LevelOfTheory` of the labels, stored as its fields
            (xc exactly as PySCF spells it, e.g. ``"b3lyp5"``; ``xc`` and ``basis`` required);
            or, for data whose level zoo does not know, ``data_source``.
        data_source: where the labels come from, when not computed by zoo.
        training_data: ``{"dataset", "size", "description"}``.
        metrics: ``{"split": <declared test split>, "values": {metric: number}}``.
        recipe: the YAML that trained it, relative to the repository root.
        tags: extra Hub tags.
    """

    name: str = _check(_name)
    family: str = _check(_family)
    license: str = _check(_license)
    elements: list[str] = _check(_elements)
    units: dict[str, str] = _check(_string_map)
    architecture: str | None = _check(_text, default=None)
    description: str = _check(_text, default="")
    level_of_theory: LevelOfTheory | None = _check(_level_of_theory, default=None)
    data_source: str | None = _check(_text, default=None)
    training_data: dict[str, Any] | None = _check(_TRAINING_DATA, default=None)
    metrics: dict[str, Any] | None = _check(_METRICS, default=None)
    recipe: str | None = _check(_recipe, default=None)
    tags: list[str] = _check(_tags, default_factory=list)

    @classmethod
    def from_dict(cls, data: dict, where: str):
        """Check and build from JSON data; ``where`` names the data in error messages."""
        return _parse(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: fields in schema order, unset optional fields left out."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name in ("description", "tags") and not value):
                continue
            if f.name == "files":
                value = {k: {"sha256": v.sha256, "size": v.size} for k, v in value.items()}
            if f.name == "level_of_theory":
                value = value.as_dict()
            out[f.name] = value
        return out

    @property
    def info(self) -> "ModelInfo":
        """The metadata alone (a :class:`ModelEntry` minus its Hub fields)."""
        return ModelInfo(**{f.name: getattr(self, f.name) for f in fields(ModelInfo)})


@dataclass(frozen=True, kw_only=True)
class ModelEntry(ModelInfo):
    """A published model: its :class:`ModelInfo` plus where it lives and what pins it.

    A published model must also declare its architecture, training data, metrics on a test
    split, recipe, and its level of theory or data source.

    Attributes:
        repo_id: Hub repository, ``"org/name"``.
        revision: the pinned commit (40 hex digits) that every download asks for.
        files: ``{filename: FileEntry}`` for ``config.json``, ``model.safetensors``, ``README.md``.
        checkpoint_format: the checkpoint format version of its ``config.json``.
        zoo_versions: the zoo versions that can load it, as a specifier (``">=0.1,<0.3"``).
        superseded_by: the name of the model that replaces this one (a better-trained
            successor). A published model is never removed or overwritten: it stays loadable,
            and loading it says what superseded it.
    """

    repo_id: str = _check(_pattern(_REPO_ID, "a Hub repo id 'org/name'"))
    revision: str = _check(_pattern(_COMMIT, "a pinned commit: 40 lowercase hex digits (not a branch name)"))
    files: dict[str, FileEntry] = _check(_files)
    checkpoint_format: int = _check(_positive_int)
    zoo_versions: str = _check(_specifier)
    superseded_by: str | None = _check(_name, default=None)

    def __post_init__(self):
        for required in ("architecture", "training_data", "metrics", "recipe"):
            if getattr(self, required) is None:
                raise _Invalid(f"field {required!r} is missing; a published model must declare it")
        if self.level_of_theory is None and self.data_source is None:
            raise _Invalid("declare 'level_of_theory' (xc, basis, grid_level, ...) or 'data_source'")

    def check_zoo_version(self, version: str) -> None:
        """Raise :class:`CheckpointFormatError` unless zoo ``version`` can load this model."""
        if Version(version) not in SpecifierSet(self.zoo_versions, prereleases=True):
            raise CheckpointFormatError(
                f"model {self.name!r} can be loaded by zoo{self.zoo_versions}, not by the installed zoo "
                f"{version}; install a matching one: pip install 'zoo{self.zoo_versions}'"
            )


def _parse(cls, data, where: str):
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected an object, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ManifestError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
    values = {}
    for name, f in known.items():
        if data.get(name) is None:
            if f.default is MISSING and f.default_factory is MISSING:
                raise ManifestError(f"{where}: field {name!r} is missing")
            continue
        try:
            values[name] = f.metadata["check"](data[name])
        except _Invalid as error:
            raise ManifestError(f"{where}: field {name!r}: {error}") from None
    try:
        return cls(**values)
    except _Invalid as error:
        raise ManifestError(f"{where}: {error}") from None


@dataclass
class Manifest:
    """The published models, read from ``source``; their package copies live in ``hub_dir/<name>``."""

    models: list[ModelEntry]
    source: str = "checkpoints.json"
    hub_dir: Path = PACKAGE_HUB_DIR

    def names(self) -> list[str]:
        return [m.name for m in self.models]

    def get(self, name: str) -> ModelEntry:
        """The entry called ``name``; an unknown name lists close matches and every known name."""
        for entry in self.models:
            if entry.name == name:
                return entry
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        known = f"Known models: {', '.join(names)}." if names else "The manifest lists no models yet."
        raise ModelNotFoundError(
            f"no model named {name!r} in {self.source}.{hint} {known} "
            "Load a folder or 'hf://org/repo@revision' for models outside the manifest."
        )

    def find(self, repo_id: str, revision: str | None) -> ModelEntry | None:
        """The entry published at ``repo_id`` and ``revision`` (any revision if None), if any."""
        for entry in self.models:
            if entry.repo_id == repo_id and revision in (None, entry.revision):
                return entry
        return None

    def replace(self, entry: ModelEntry) -> "Manifest":
        """A copy with ``entry`` added, or replacing the entry of the same name (to change its
        metadata; :func:`~zoo.publish.add_model` refuses to replace a model's weights)."""
        models = [m for m in self.models if m.name != entry.name] + [entry]
        return Manifest(sorted(models, key=lambda m: m.name), self.source, self.hub_dir)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "models": [m.to_dict() for m in self.models],
        }

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def parse_manifest(data: Any, source: str = "checkpoints.json", hub_dir: Path = PACKAGE_HUB_DIR) -> Manifest:
    """Check JSON ``data`` against the schema; errors name the entry and the field."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected an object with 'format', 'format_version' and 'models'")
    if data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"{source}: field 'format' must be {MANIFEST_FORMAT!r}, got {data.get('format')!r}")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MANIFEST_VERSION:
        raise ManifestError(
            f"{source}: manifest format_version {version!r} is not one this zoo reads (1 to {MANIFEST_VERSION}); "
            "update zoo (pip install -U zoo) or the manifest"
        )
    unknown = sorted(set(data) - {"format", "format_version", "models"})
    if unknown or not isinstance(data.get("models"), list):
        raise ManifestError(f"{source}: expected exactly 'format', 'format_version' and a list 'models'")
    models, seen = [], set()
    for i, item in enumerate(data["models"]):
        if version < _LEVEL_FIELDS_SINCE and isinstance(item, dict) and "level_of_theory" in item:
            item = {**item, "level_of_theory": upgrade_level_of_theory(item["level_of_theory"])}
        name = item.get("name") if isinstance(item, dict) else None
        where = f"{source}: model {name!r} (entry {i})" if isinstance(name, str) else f"{source}: entry {i}"
        entry = ModelEntry.from_dict(item, where)
        if entry.name in seen:
            raise ManifestError(f"{where}: field 'name': {entry.name!r} is used by another entry")
        seen.add(entry.name)
        models.append(entry)
    for entry in models:
        if entry.superseded_by is not None and (entry.superseded_by not in seen or entry.superseded_by == entry.name):
            raise ManifestError(f"{source}: model {entry.name!r}: field 'superseded_by': {entry.superseded_by!r} "
                                "must name another model of the manifest")
    return Manifest(models, source, Path(hub_dir))


def default_manifest_path() -> Path:
    """The source checkout's ``checkpoints.json`` if there is one, else the package's copy."""
    return CHECKOUT_MANIFEST if CHECKOUT_MANIFEST.is_file() else PACKAGE_MANIFEST


def load_manifest(path: str | Path | None = None, hub_dir: str | Path | None = None) -> Manifest:
    """Read and check a manifest (default: :func:`default_manifest_path`).

    Args:
        path: a ``checkpoints.json``.
        hub_dir: where package copies of its models live (``<hub_dir>/<name>/``); default ``zoo/_hub``.
    """
    path = Path(path) if path is not None else default_manifest_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {path}") from None
    except json.JSONDecodeError as error:
        raise ManifestError(f"{path}: not valid JSON: {error}") from None
    return parse_manifest(data, str(path), Path(hub_dir) if hub_dir is not None else PACKAGE_HUB_DIR)


def as_manifest(manifest: Manifest | str | Path | None) -> Manifest:
    """Accept a :class:`Manifest`, a path to one, or None for the default."""
    return manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
