"""``zoo.load``, ``zoo.download``, ``zoo.list_models``: from a name, a Hub reference or a folder to a model.

A model is named in one of three ways:

- a manifest name, ``"qm9-u0-demo"``: fetched at the manifest's pinned revision and checked
  against its sha256s; with no network and no cache, the copy shipped inside the zoo package;
- a Hub reference, ``"hf://org/repo@revision"`` (revision optional, default ``main``): checked
  when the manifest lists that repo and revision, taken as served otherwise;
- a folder in Hub layout (any path with a ``/``, or a :class:`~pathlib.Path`).

A named model that cannot be fetched is loaded from the package's copy. That is said once per
process when the Hub is unreachable (a program loading a dozen models says it once), not at all when
``HF_HUB_OFFLINE`` asks for no network, and every time, with the error, when the Hub answered wrongly.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.registry._errors import CheckpointFormatError, DownloadError, SupersededModelWarning
from zoo.registry._manifest import CARD_FILE, CONFIG_FILE, FAMILIES, HUB_FILES, Manifest, ModelEntry, as_manifest

if TYPE_CHECKING:  # torch is imported where a model is loaded, not by `zoo list`
    import torch

log = logging.getLogger("zoo.registry")

#: Endpoints this process has already said are unreachable.
_announced_unreachable: set[str] = set()

# a revision is a commit, branch or tag: slashes allowed (``refs/pr/1``), ``..`` segments not
_HF_REF = re.compile(r"^hf://(?P<repo_id>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)"
                     r"(?:@(?P<revision>(?!(?:.*/)?\.\.?(?:/|$))[\w./-]+))?$")


@dataclass(frozen=True)
class Resolved:
    """A model's files on disk: the folder, where it came from, and its manifest entry if any."""

    folder: Path
    source: str
    name: str
    entry: ModelEntry | None


def _is_path(ref) -> bool:
    return isinstance(ref, Path) or "/" in ref or os.sep in ref or ref.startswith((".", "~"))


def _check_loadable(entry: ModelEntry) -> None:
    """Refuse, before downloading anything, a model that the installed zoo cannot load."""
    from zoo import __version__
    from zoo.registry._checkpoint import check_format_version

    entry.check_zoo_version(__version__)
    check_format_version(entry.checkpoint_format, f"model {entry.name!r}", entry.zoo_versions)


def resolve(
    ref: str | Path,
    manifest: Manifest | str | Path | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    files: tuple[str, ...] = HUB_FILES,
) -> Resolved:
    """Find or fetch the ``files`` of a model (see the module docstring for the forms of ``ref``)."""
    from zoo.registry._hub import fetch_once, verify_folder

    if not isinstance(ref, (str, Path)):
        raise TypeError(f"expected a model name, 'hf://org/repo@revision' or a folder, got {type(ref).__name__}")
    if isinstance(ref, str) and ref.startswith("hf://"):
        match = _HF_REF.match(ref)
        if not match:
            raise DownloadError(f"bad Hub reference {ref!r}; expected 'hf://org/repo' or 'hf://org/repo@revision'")
        repo_id, revision = match["repo_id"], match["revision"] or "main"
        entry = as_manifest(manifest).find(repo_id, revision)
        if entry is not None:
            _check_loadable(entry)
        pinned = {f: entry.files.get(f) if entry else None for f in files}
        folder, source = fetch_once(repo_id, revision, pinned, cache_dir=cache_dir, token=token, label=ref)
        return Resolved(folder, source, entry.name if entry else repo_id, entry)
    if _is_path(ref):
        folder = Path(ref).expanduser()
        if not (folder / CONFIG_FILE).is_file():
            raise CheckpointFormatError(
                f"{folder} is not a model folder (no {CONFIG_FILE}); expected {', '.join(HUB_FILES)} "
                "as written by zoo.registry.save_pretrained"
            )
        return Resolved(folder, "local folder", folder.name, None)

    manifest = as_manifest(manifest)
    entry = manifest.get(ref)
    _check_loadable(entry)
    if entry.superseded_by is not None:
        warnings.warn(f"model {entry.name!r} is superseded by {entry.superseded_by!r} (zoo info "
                      f"{entry.superseded_by}); it stays loadable for reproducibility", SupersededModelWarning,
                      stacklevel=3)
    try:
        folder, source = fetch_once(
            entry.repo_id, entry.revision, {f: entry.files[f] for f in files},
            cache_dir=cache_dir, token=token, label=f"model {entry.name!r}",
        )
    except DownloadError as error:
        package = manifest.hub_dir / entry.name
        if not (package / CONFIG_FILE).is_file():
            raise
        verify_folder(package, {f: entry.files[f] for f in files}, f"the package copy of {entry.name!r}")
        _report_fallback(error, entry.name, package)
        return Resolved(package, f"the zoo package ({package})", entry.name, entry)
    return Resolved(folder, source, entry.name, entry)


def _report_fallback(error: DownloadError, name: str, package: Path) -> None:
    """Say (or not, see the module docstring) that ``name`` comes from its package copy ``package``."""
    from zoo.registry._hub import HubUnreachableError, NotCachedError

    fallback = f"using the copy of {name!r} shipped with the zoo package: {package}"
    if isinstance(error, NotCachedError):  # HF_HUB_OFFLINE, or a rank whose node's first rank said why
        log.debug("%s\n-> %s", error, fallback)
    elif isinstance(error, HubUnreachableError):
        if error.endpoint not in _announced_unreachable:
            _announced_unreachable.add(error.endpoint)
            log.warning("zoo: the Hub at %s is unreachable (%s); using the models shipped with zoo "
                        "(set HF_HUB_OFFLINE=1 to skip the check)", error.endpoint, error.cause)
        log.debug("%s\n-> %s", error, fallback)
    else:  # the Hub answered, wrongly: a revision it lacks, a file cut off
        log.warning("%s\n-> %s", error, fallback)


def load(
    ref: str | Path,
    device: str = "cpu",
    dtype: torch.dtype | str | None = None,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    manifest: Manifest | str | Path | None = None,
    trust_remote_code: bool = False,
    trusted_modules: Sequence[str] = (),
):
    """The model ``ref`` names, as its task (a LightningModule) in eval mode on ``device``.

    Every family answers through the same entry points (docs/inference.md): ``task.predict(atoms
    or a list, batch_size=...)`` returns dicts of NumPy arrays and floats with the units of
    ``task.prediction_units``; ``task.as_calculator()`` is an ASE calculator for a model with a
    potential energy; ``task.generate(smiles, k)`` for a model that generates structures::

        task = zoo.load("ethanol-dens-pbe-def2svp")
        task.predict(atoms)   # {"energy": float eV, "forces": [n_atoms, 3] eV/Å}

    Args:
        ref: a manifest name (``zoo.list_models()``), ``"hf://org/repo@revision"``, or a folder.
        device: where to put the model.
        dtype: floating dtype of the model (``torch.float32``, ``torch.float64`` or their names);
            default that of its weights (float64 for the Hamiltonian models, float32 for the others).
        cache_dir: Hub cache (default ``HF_HUB_CACHE`` or ``~/.cache/huggingface/hub``).
        token: Hub token for private or gated repos (default: ``HF_TOKEN`` or the stored login).
        manifest: a :class:`~zoo.registry.Manifest` or a path to one (default: zoo's own).
        trust_remote_code: build whatever classes the model's ``config.json`` names, running
            their code. By default only zoo's own classes and torch.optim's optimizers and
            schedulers are built; anything else is an :class:`~zoo.registry.UntrustedCodeError`
            before it is imported (docs/security.md).
        trusted_modules: module prefixes to trust besides those, e.g. ``("mylab",)``.

    Returns the task, with ``task.registry_info`` saying where it was loaded from. Every path
    through its model refuses elements the model was not trained on
    (:class:`~zoo.registry.UnsupportedElementsError`).

    Under ``torch.distributed`` this is a collective: call it on every rank (one per node
    downloads while the others wait at a barrier).
    """
    from zoo.registry._restore import load_pretrained

    resolved = resolve(ref, manifest, cache_dir, token)
    return load_pretrained(resolved.folder, device=device, name=resolved.name, source=resolved.source,
                           trust_remote_code=trust_remote_code, trusted_modules=trusted_modules, dtype=dtype)


def download(
    ref: str | Path,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    manifest: Manifest | str | Path | None = None,
) -> Path:
    """Fetch and verify a model's files without loading it; returns the folder that holds them."""
    return resolve(ref, manifest, cache_dir, token).folder


def list_models(
    family: str | None = None,
    pattern: str | Sequence[str] | None = None,
    manifest: Manifest | str | Path | None = None,
) -> list[str]:
    """Names of the published models, as ``zoo list`` shows them.

    Args:
        family: only models of this family (one of :data:`~zoo.registry.FAMILIES`: ``"force-field"``, ...).
        pattern: only names matching this shell wildcard (``"hamiltonian-*"``), or any of several.
        manifest: a :class:`~zoo.registry.Manifest` or a path to one (default: zoo's own).
    """
    return [m.name for m in select_models(as_manifest(manifest), family, pattern)]


def select_models(manifest: Manifest, family: str | None = None,
                  pattern: str | Sequence[str] | None = None) -> list[ModelEntry]:
    """The entries of ``manifest`` of ``family`` whose names match ``pattern`` (see :func:`list_models`)."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; the families are {', '.join(FAMILIES)}")
    patterns = [pattern] if isinstance(pattern, str) else list(pattern or ())
    return [m for m in manifest.models if family in (None, m.family)
            and (not patterns or any(fnmatch.fnmatchcase(m.name, p) for p in patterns))]


def model_card(
    ref: str | Path,
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    manifest: Manifest | str | Path | None = None,
) -> str:
    """The model card (``README.md``) of a model, fetching only that file."""
    resolved = resolve(ref, manifest, cache_dir, token, files=(CARD_FILE,))
    return (resolved.folder / CARD_FILE).read_text(encoding="utf-8")
