"""Publishing: a checkpoint folder -> a manifest entry, a package copy, and a Hub repo.

1. ``save_pretrained(task, folder, info)`` writes the folder (or the export callback does).
2. ``zoo hub add FOLDER --repo-id org/name`` copies its Hub files to ``zoo/_hub/<name>/`` and
   writes its entry (hashes, sizes, pinned revision) into ``checkpoints.json``: one command.
3. ``zoo hub push NAME`` builds the exact folder, checks it against the entry (hashes, revision,
   card front matter) and uploads it with ``HfApi.upload_folder``; ``--dry-run`` stops before the
   upload and leaves the folder for inspection.
"""

from __future__ import annotations

import dataclasses
import json

import logging
import shutil
import tempfile
from pathlib import Path

from zoo.publish._server import git_revision
from zoo.registry._cards import check_card
from zoo.registry._checkpoint import read_config
from zoo.registry._errors import IntegrityError, ManifestError
from zoo.registry._hub import file_mismatch, hub_endpoint, sha256_file
from zoo.registry._manifest import (
    CARD_FILE,
    CHECKOUT_MANIFEST,
    CONFIG_FILE,
    HUB_FILES,
    PACKAGE_MANIFEST,
    Manifest,
    ModelEntry,
    as_manifest,
    default_manifest_path,
)

log = logging.getLogger("zoo.publish")


def manifest_entry(folder: str | Path, repo_id: str, zoo_versions: str | None = None) -> ModelEntry:
    """The manifest entry of a checkpoint folder: its metadata, file hashes and pinned revision.

    Args:
        folder: written by :func:`~zoo.registry.save_pretrained`.
        repo_id: the Hub repo it is published at.
        zoo_versions: which zoo versions load it (default: ``>=`` the version that wrote it).
    """
    folder = Path(folder)
    config, info = read_config(folder)
    # the version of the file as published, not the one read_config upgraded it to
    written = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))["format_version"]
    files = {f: {"sha256": sha256_file(folder / f), "size": (folder / f).stat().st_size} for f in HUB_FILES}
    return ModelEntry.from_dict(
        {
            **info.to_dict(),
            "repo_id": repo_id,
            "revision": git_revision(folder, info.name),
            "files": files,
            "checkpoint_format": written,
            "zoo_versions": zoo_versions or f">={config['zoo_version']}",
        },
        f"{folder}/config.json",
    )


def check_folder(folder: str | Path, entry: ModelEntry) -> None:
    """Raise :class:`IntegrityError` listing every way ``folder`` differs from its manifest entry."""
    folder = Path(folder)
    problems = []
    for name, expected in entry.files.items():
        path = folder / name
        problem = "missing" if not path.is_file() else file_mismatch(path, expected)
        if problem:
            problems.append(f"{name}: {problem}")
    if not problems:
        revision = git_revision(folder, entry.name)
        if revision != entry.revision:
            problems.append(f"publishes as commit {revision}, the manifest pins {entry.revision}")
        problems += [f"{CARD_FILE} front matter: {p}" for p in
                     check_card((folder / CARD_FILE).read_text(encoding="utf-8"), entry)]
    if problems:
        raise IntegrityError(f"{folder} does not match manifest entry {entry.name!r}:\n  " + "\n  ".join(problems))


def stage(folder: str | Path, out: str | Path) -> Path:
    """Copy exactly the Hub files of ``folder`` into a fresh ``out`` (no stray files get uploaded)."""
    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in HUB_FILES:
        shutil.copyfile(Path(folder) / name, out / name)
    return out


def add_model(folder: str | Path, repo_id: str, manifest_path: str | Path | None = None,
              hub_dir: str | Path | None = None, zoo_versions: str | None = None,
              supersedes: str | None = None) -> ModelEntry:
    """Publish a checkpoint folder into the registry: package copy plus manifest entry.

    The Hub files are copied to ``<hub_dir>/<name>/`` and the entry is added to the manifest. With
    the default manifest, both the checkout's ``checkpoints.json`` and the package's copy are
    written, so they never disagree.

    A published model is never overwritten: adding a folder under a name the manifest already
    has is allowed only for the same files (to change metadata such as ``repo_id``). A better
    model is published under a new name with ``supersedes=<old name>``, which marks the old
    entry ``superseded_by`` the new one; the old one stays loadable.
    """
    entry = manifest_entry(folder, repo_id, zoo_versions)
    paths = [Path(manifest_path)] if manifest_path is not None else [default_manifest_path()]
    if manifest_path is None and CHECKOUT_MANIFEST.is_file():
        paths = [CHECKOUT_MANIFEST, PACKAGE_MANIFEST]
    manifest = as_manifest(paths[0]) if paths[0].is_file() else Manifest([], str(paths[0]))
    if hub_dir is not None:
        manifest.hub_dir = Path(hub_dir)
    published = {m.name: m for m in manifest.models}
    if entry.name in published and published[entry.name].files != entry.files:
        raise ManifestError(
            f"model {entry.name!r} is published with other weights ({published[entry.name].repo_id}@"
            f"{published[entry.name].revision}); a published model is never overwritten. Give the new one "
            f"another name (its card's name, e.g. {entry.name}-v2) and pass --supersedes {entry.name}"
        )
    if supersedes is not None and supersedes not in published:
        raise ManifestError(f"--supersedes {supersedes!r}: no such model in {paths[0]}")
    target = manifest.hub_dir / entry.name
    if Path(folder).resolve() != target.resolve():
        stage(folder, target)
    updated = manifest.replace(entry)
    if supersedes is not None:
        updated = updated.replace(dataclasses.replace(published[supersedes], superseded_by=entry.name))
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        updated.save(path)
    log.info("added %r (%s@%s) to %s", entry.name, entry.repo_id, entry.revision, ", ".join(map(str, paths)))
    return entry


def push(name: str, repo_id: str | None = None, manifest: Manifest | str | Path | None = None,
         folder: str | Path | None = None, dry_run: bool = False, out: str | Path | None = None,
         token: str | None = None, private: bool = False):
    """Upload model ``name`` to the Hub with ``HfApi.upload_folder``, after checking it.

    Args:
        repo_id: where to upload (default: the manifest's ``repo_id``).
        folder: the model folder (default: its package copy, ``<hub_dir>/<name>``).
        dry_run: build and check the exact folder, upload nothing; returns the folder.
        out: where to build the folder (default: a temporary directory, removed after upload).

    Returns the built folder for a dry run, else the Hub's ``CommitInfo``. The Hub gives an upload
    its own commit id; the manifest keeps pinning the deterministic one that ``zoo hub serve``
    reproduces, so users of huggingface.co need the manifest to pin the Hub's commit instead.
    """
    manifest = as_manifest(manifest)
    entry = manifest.get(name)
    repo_id = repo_id or entry.repo_id
    source = Path(folder) if folder is not None else manifest.hub_dir / entry.name
    if not source.is_dir():
        raise ManifestError(f"no folder {source} for model {name!r}; pass --folder")
    with tempfile.TemporaryDirectory(prefix="zoo-push-") as tmp:
        built = stage(source, Path(out) if out is not None else Path(tmp) / entry.name)
        check_folder(built, entry)
        if dry_run:
            log.info("dry run: %s matches manifest entry %r; would upload to %s", built, name, repo_id)
            return built
        from huggingface_hub import HfApi

        api = HfApi(endpoint=hub_endpoint(), token=token)
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=built, commit_message=f"zoo model {name}")
    log.info("uploaded %r to %s at commit %s (manifest pins %s)", name, repo_id, info.oid, entry.revision)
    return info
