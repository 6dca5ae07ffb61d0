"""``checkpoints.json``: every published model, pinned by Hub commit and by the sha256 of each file.

The schema is the two dataclasses below: :class:`ModelInfo` (what a model is: the metadata a
checkpoint's ``config.json`` carries) and :class:`ModelEntry` (a published model: that metadata
plus where it lives on the Hub and the hashes that pin it). Every field is checked when read; a
malformed manifest is a :class:`ManifestError` naming the entry and the field (the checks are
:mod:`zoo.registry._fields`). docs/registry.md documents each field.

This module imports no torch, so that ``zoo list`` stays fast.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import Version

import zoo.registry._fields as check
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

# ---------------------------------------------------------------------------------------------
# the checks of the fields that need this module's names (the others: zoo.registry._fields)


def _family(value):
    if value not in FAMILIES:
        raise check.Invalid(f"expected one of {list(FAMILIES)}, got {value!r}")
    return value


def _files(value):
    if not isinstance(value, dict):
        raise check.Invalid(f"expected an object mapping file names to {{sha256, size}}, got {value!r}")
    missing = [f for f in HUB_FILES if f not in value]
    if missing:
        raise check.Invalid(f"missing {missing}; a model repo has {list(HUB_FILES)}")
    # names become paths in the cache, the package copy and the published folder: no other name
    unknown = sorted(set(value) - set(HUB_FILES))
    if unknown:
        raise check.Invalid(f"unknown files {unknown}; a model repo has exactly {list(HUB_FILES)}, plain names in its root")
    file_entry = check.record({"sha256": (check.matching(check.SHA256, "64 lowercase hex digits"), True),
                               "size": (check.byte_size, True)})
    out = {}
    for name, entry in value.items():
        try:
            out[name] = FileEntry(**file_entry(entry))
        except check.Invalid as error:
            raise check.Invalid(f"file {name!r}: {error}") from None
    return out


# ---------------------------------------------------------------------------------------------
# older formats


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
        recipe: the recipe that trained it, as ``zoo fit --config`` takes it: ``recipes/<name>.yaml``
            for a packaged recipe (:mod:`zoo.recipes`), else a YAML file relative to the folder
            ``zoo verify`` runs in.
        tags: extra Hub tags.
    """

    name: str = check.field(check.model_name)
    family: str = check.field(_family)
    license: str = check.field(check.license_id)
    elements: list[str] = check.field(check.element_symbols)
    units: dict[str, str] = check.field(check.string_map)
    architecture: str | None = check.field(check.text, default=None)
    description: str = check.field(check.text, default="")
    level_of_theory: LevelOfTheory | None = check.field(check.level_of_theory, default=None)
    data_source: str | None = check.field(check.text, default=None)
    training_data: dict[str, Any] | None = check.field(check.TRAINING_DATA, default=None)
    metrics: dict[str, Any] | None = check.field(check.METRICS, default=None)
    recipe: str | None = check.field(check.recipe_path, default=None)
    tags: list[str] = check.field(check.tag_list, default_factory=list)

    @classmethod
    def from_dict(cls, data: dict, where: str):
        """Check and build from JSON data; ``where`` names the data in error messages."""
        return check.parse(cls, data, where)

    @classmethod
    def check_given(cls, data: dict, where: str) -> None:
        """Check the fields ``data`` gives, as :meth:`from_dict` would, without requiring the others."""
        check.check_given(cls, data, where)

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

    repo_id: str = check.field(check.matching(check.REPO_ID, "a Hub repo id 'org/name'"))
    revision: str = check.field(check.matching(check.COMMIT, "a pinned commit: 40 lowercase hex digits (not a branch name)"))
    files: dict[str, FileEntry] = check.field(_files)
    checkpoint_format: int = check.field(check.positive_int)
    zoo_versions: str = check.field(check.version_specifier)
    superseded_by: str | None = check.field(check.model_name, default=None)

    def __post_init__(self):
        for required in ("architecture", "training_data", "metrics", "recipe"):
            if getattr(self, required) is None:
                raise check.Invalid(f"field {required!r} is missing; a published model must declare it")
        if self.level_of_theory is None and self.data_source is None:
            raise check.Invalid("declare 'level_of_theory' (xc, basis, grid_level, ...) or 'data_source'")

    def check_zoo_version(self, version: str) -> None:
        """Raise :class:`CheckpointFormatError` unless zoo ``version`` can load this model."""
        if Version(version) not in SpecifierSet(self.zoo_versions, prereleases=True):
            raise CheckpointFormatError(
                f"model {self.name!r} can be loaded by zoo{self.zoo_versions}, not by the installed zoo "
                f"{version}; install a matching one: pip install 'zoo{self.zoo_versions}'"
            )


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
