"""Hugging Face Hub I/O: revision-pinned downloads into the Hub cache, sha256 checks, one download per node.

Files come from ``huggingface_hub.hf_hub_download`` and live in its cache, so the usual settings
apply: ``HF_ENDPOINT`` (a mirror such as ``zoo hub serve``), ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``,
``HF_TOKEN`` for private or gated repos. zoo reads these when it fetches, not when
``huggingface_hub`` was imported, so they can be changed inside a running program.

Before downloading, zoo checks that the endpoint answers at all, waiting ``ZOO_HUB_TIMEOUT`` seconds
(default 5). An endpoint that does not answer (refused, unknown host, no answer in time) is
remembered for the rest of the process and not asked again, so that a program loading many models
on a machine without network waits once, not once per model.

A pinned commit never changes, so a file already in the cache is used without asking the server;
every file, cached or downloaded, is checked against the sha256 and size the manifest pins. A file
that fails is deleted from the cache before the error is raised, so it is never reused.

A cache may be shared (``HF_HUB_CACHE`` on a cluster) and so written by others. A cached file whose
link leads out of its repo's folder in the cache is refused unread, and deleting a bad entry
removes only the link and a blob inside that folder, never what a link points to elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from huggingface_hub import HfApi, constants, get_session, hf_hub_download, try_to_load_from_cache
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from zoo.registry._errors import DownloadError, IntegrityError, RegistryError
from zoo.registry._manifest import FileEntry

log = logging.getLogger("zoo.registry")

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
T = TypeVar("T")

#: Seconds to wait for the Hub to answer at all before a download, unless ZOO_HUB_TIMEOUT says otherwise.
DEFAULT_TIMEOUT = 5.0

#: Endpoints that did not answer in this process, with why: they are not asked again (see fetch).
_unreachable_endpoints: dict[str, str] = {}


class HubUnreachableError(DownloadError):
    """The endpoint did not answer (connection refused, unknown host, no answer within the timeout)."""

    def __init__(self, endpoint: str, cause: str):
        super().__init__(
            f"cannot reach the Hub at {endpoint} ({cause}). Check the network, point HF_ENDPOINT at a reachable "
            "mirror (zoo hub serve), set ZOO_HUB_TIMEOUT to wait longer (seconds), or load from the cache with "
            "HF_HUB_OFFLINE=1"
        )
        self.endpoint = endpoint
        self.cause = cause


class NotCachedError(DownloadError):
    """Files are not in the cache, and the network was not to be asked: ``HF_HUB_OFFLINE`` is set, or
    this is a rank waiting for its node's download, which failed (and said why)."""


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def hub_timeout() -> float:
    """Seconds to wait for the Hub to answer: ``ZOO_HUB_TIMEOUT``, default :data:`DEFAULT_TIMEOUT`."""
    value = os.environ.get("ZOO_HUB_TIMEOUT")
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise RegistryError(f"ZOO_HUB_TIMEOUT={value!r} is not a number of seconds > 0; set it to e.g. 5, or unset it")
    return seconds


def hub_cache(cache_dir: str | Path | None = None) -> str:
    return str(cache_dir or os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_mismatch(path: str | Path, expected: FileEntry) -> str | None:
    """How ``path`` differs from ``expected`` (size first: cheap, and it names truncation), or None."""
    size = os.path.getsize(path)
    if size != expected.size:
        return f"size {size} bytes, the manifest pins {expected.size}"
    digest = sha256_file(path)
    if digest != expected.sha256:
        return f"sha256 {digest}, the manifest pins {expected.sha256}"
    return None


def verify_folder(folder: Path, files: Mapping[str, FileEntry], label: str) -> None:
    """Raise :class:`IntegrityError` unless every pinned file in ``folder`` matches."""
    for name, expected in files.items():
        path = folder / name
        problem = "missing" if not path.is_file() else file_mismatch(path, expected)
        if problem:
            raise IntegrityError(f"{label}: {path}: {problem}; the folder was modified or damaged")


@dataclass(frozen=True)
class _CacheEntry:
    """A file in the Hub cache: its snapshot pointer (``snapshots/<commit>/<name>``, a link, or a
    copy where the file system has no links) and the blob that pointer resolves to, each as a path
    relative to the resolved cache folder."""

    cache: Path
    repo: Path
    pointer: Path
    blob: Path

    @classmethod
    def of(cls, path: str, repo_id: str, cache: str) -> "_CacheEntry":
        root = Path(os.path.realpath(cache))  # the cache folder itself may be a link the user made
        pointer = Path(os.path.realpath(Path(path).parent)) / Path(path).name
        blob = Path(os.path.realpath(path))
        repo = Path(repo_folder_name(repo_id=repo_id, repo_type="model"))
        return cls(root, repo, _relative(pointer, root), _relative(blob, root))

    @property
    def pointer_inside(self) -> bool:
        return self.pointer.is_relative_to(self.repo / "snapshots")

    @property
    def blob_inside(self) -> bool:
        return self.blob.is_relative_to(self.repo / "blobs") or (self.pointer_inside and self.blob == self.pointer)

    def evict(self) -> bool:
        """Delete the pointer (the link itself, never what it points to) and the blob if it lies in
        the repo's ``blobs/``; nothing else. Returns whether the pointer is gone."""
        if self.blob_inside:
            _unlink_within(self.cache, self.blob)
        return self.pointer_inside and _unlink_within(self.cache, self.pointer)


def _relative(path: Path, root: Path) -> Path:
    return path.relative_to(root) if path.is_relative_to(root) else path


def _unlink_within(root: Path, relative: Path) -> bool:
    """Delete ``root / relative`` without following a link on the way, so that a folder swapped for
    a link in the meantime (a shared cache is writable by others) stops the delete instead of
    redirecting it. Returns whether the file is gone."""
    if not {os.open, os.unlink} <= os.supports_dir_fd:  # Windows: no dir_fd, a plain delete of the checked path
        (root / relative).unlink(missing_ok=True)
        return True
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        for part in relative.parts[:-1]:
            inner = os.open(part, flags, dir_fd=folder)
            os.close(folder)
            folder = inner
        os.unlink(relative.name, dir_fd=folder)
    except FileNotFoundError:
        pass
    except OSError as error:  # a link or a non-folder on the way, or no permission
        log.warning("left %s in the Hub cache: %s", root / relative, error)
        return False
    finally:
        os.close(folder)
    return True


def _check(path: str, name: str, expected: FileEntry | None, label: str, repo_id: str, cache: str,
           downloaded: bool) -> None:
    entry = _CacheEntry.of(path, repo_id, cache)
    if not (entry.pointer_inside and entry.blob_inside):
        removed = entry.evict()
        raise IntegrityError(
            f"{label}: {name}: the cache entry {path} leads out of the cache folder of {repo_id} (to "
            f"{entry.cache / entry.blob}): tampered with by someone who can write to {cache}. It was not read, "
            f"and nothing outside the cache was deleted; {'the link was removed' if removed else 'remove it'}. "
            "Use a cache only you can write to (HF_HUB_CACHE), then run again."
        )
    if expected is None:
        return
    problem = file_mismatch(path, expected)
    if problem is None:
        return
    removed = entry.evict()
    if downloaded:
        cause = (f"the file just downloaded from {hub_endpoint()} differs from what the manifest pins: truncated in "
                 "transit, or the server holds another build (check HF_ENDPOINT and the mirror)")
    else:
        cause = "the cached copy was tampered with or truncated"
    fate = ("was deleted and will not be reused; run again to download a fresh copy" if removed else
            "could not be deleted (see the warning above); delete it, then run again")
    raise IntegrityError(f"{label}: {name}: {problem}; {cause}. The bad cache entry {path} {fate}.")


def _once_more(call: Callable[[], T]) -> T:
    # A server that just answered 5xx may have closed the pooled connection under the client;
    # the next request then fails in transport although the server is up.
    try:
        return call()
    except HfHubHTTPError:
        raise
    except Exception:
        return call()


def _unreachable(endpoint: str, error: Exception, timeout: float | None = None) -> HubUnreachableError:
    """Remember that ``endpoint`` did not answer, and say so."""
    cause = f"{type(error).__name__}: {error}"
    if timeout is not None and "Timeout" in type(error).__name__:  # ReadTimeout, ConnectTimeout, ...
        cause += f", no answer within {timeout:g} s"
    _unreachable_endpoints[endpoint] = cause
    return HubUnreachableError(endpoint, cause)


def _check_answers(endpoint: str) -> None:
    """Raise :class:`HubUnreachableError` unless ``endpoint`` answers (any HTTP status) within
    :func:`hub_timeout` seconds. Asked before any request of the Hub client, whose first request
    may itself first wait for the Hub (its telemetry), with a timeout of its own."""
    timeout = hub_timeout()
    try:
        get_session().head(endpoint, timeout=timeout)
    except Exception as error:  # transport: refused, unknown host, no answer in time
        raise _unreachable(endpoint, error, timeout) from None


def _check_revision(api: HfApi, repo_id: str, revision: str, token) -> None:
    """Fail fast, with the fix, if ``repo_id@revision`` is not there (before any file request,
    which the Hub client would retry with backoff for tens of seconds on a 5xx)."""
    endpoint = hub_endpoint()
    try:
        api.model_info(repo_id, revision=revision, token=token, timeout=constants.HF_HUB_ETAG_TIMEOUT)
        return
    except (RevisionNotFoundError, RepositoryNotFoundError, HfHubHTTPError) as error:
        failure = error
    except Exception as error:  # transport: refused, DNS, timeout
        raise _unreachable(endpoint, error) from None
    try:
        refs = _once_more(lambda: api.list_repo_refs(repo_id, token=token))
    except HfHubHTTPError:
        raise DownloadError(
            f"repository {repo_id} was not found at {endpoint}. Check the repo id; for a private or gated "
            "repo set HF_TOKEN (or run `hf auth login`) with access to it"
        ) from None
    except Exception as error:
        raise _unreachable(endpoint, error) from None
    heads = {r.name: r.target_commit for r in [*refs.branches, *refs.tags]}
    if revision in heads or revision in heads.values():
        raise DownloadError(f"{endpoint} failed to serve {repo_id}@{revision}: {failure}") from None
    known = ", ".join(f"{name} -> {commit}" for name, commit in heads.items()) or "no branches"
    raise DownloadError(
        f"revision {revision!r} does not exist in {repo_id} at {endpoint} (it has {known}). Pin a commit that "
        "exists there; if the manifest pins it, this server holds another build of the model (rebuild the "
        "mirror with `zoo hub serve`, or fix the manifest with `zoo hub add`)"
    ) from None


def fetch(
    repo_id: str,
    revision: str,
    files: Mapping[str, FileEntry | None],
    cache_dir: str | Path | None = None,
    token: str | bool | None = None,
    network: bool = True,
    label: str | None = None,
) -> tuple[Path, str]:
    """Make ``files`` of ``repo_id@revision`` available in the Hub cache; returns (folder, source).

    Args:
        files: ``{filename: FileEntry}`` to verify, or ``{filename: None}`` to take as served.
        network: False to use the cache only (offline, or a rank waiting for its node's download).
        label: what the files are, for messages (default ``repo_id@revision``).
    """
    label = label or f"{repo_id}@{revision}"
    cache = hub_cache(cache_dir)
    pinned = bool(_COMMIT.match(revision))
    paths, missing = {}, []
    for name, expected in files.items():
        # a pinned commit never changes: a cached file needs no request (a branch is re-resolved
        # unless there is no network, when its last cached commit is used)
        use_cache = pinned or not network or hub_offline()
        cached = try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision) if use_cache else None
        if isinstance(cached, str):
            _check(cached, name, expected, label, repo_id, cache, downloaded=False)
            paths[name] = cached
        else:
            missing.append(name)
    source = "the Hugging Face cache"
    if missing:
        if not network or hub_offline():
            why = "HF_HUB_OFFLINE is set" if hub_offline() else "the download on this node's first rank failed"
            raise NotCachedError(
                f"{label}: {', '.join(missing)} not in the Hugging Face cache {cache}, and {why}. Fix: unset "
                f"HF_HUB_OFFLINE, or run `zoo download` where there is network and copy {cache} (or set "
                "HF_HUB_CACHE to a shared copy), or serve the models on the local network with `zoo hub serve`"
            )
        endpoint = hub_endpoint()
        if endpoint in _unreachable_endpoints:
            raise HubUnreachableError(endpoint, f"{_unreachable_endpoints[endpoint]}; not asked again in this process")
        _check_answers(endpoint)
        api = HfApi(endpoint=endpoint, token=token)
        _check_revision(api, repo_id, revision, token)
        for name in missing:
            try:
                path = hf_hub_download(repo_id, name, revision=revision, cache_dir=cache, token=token, endpoint=endpoint)
            except EntryNotFoundError:
                raise DownloadError(f"{label}: {repo_id} has no file {name!r} at {revision}; is it a zoo model repo?") from None
            except HfHubHTTPError as error:
                raise DownloadError(f"{label}: downloading {name} from {endpoint} failed: {error}") from None
            except Exception as error:  # transport: the connection dropped mid-file, the server stopped, a disk error
                raise DownloadError(
                    f"{label}: downloading {name} from {endpoint} broke off ({type(error).__name__}: {error}). "
                    "Run again (the download resumes where it stopped); check HF_ENDPOINT and that the server or "
                    "mirror (zoo hub serve) is up, or load from the cache with HF_HUB_OFFLINE=1"
                ) from None
            _check(path, name, files[name], label, repo_id, cache, downloaded=True)
            paths[name] = path
        source = f"{endpoint} (downloaded)"
    if any(v is None for v in files.values()):
        log.warning("%s is not in the manifest: its files are not checked against pinned hashes", label)
    folders = {Path(p).parent for p in paths.values()}
    if len(folders) != 1:  # a branch moved between two files
        raise DownloadError(f"{label}: files came from different commits {sorted(map(str, folders))}; pin a commit")
    return folders.pop(), source


def _process_group():
    # torch is not imported for `zoo download`; then there is no process group either
    dist = sys.modules.get("torch.distributed")
    return dist if dist is not None and dist.is_available() and dist.is_initialized() else None


def _node_leader(dist) -> bool:
    local = os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID"))
    return int(local) == 0 if local is not None else dist.get_rank() == 0


def fetch_once(*args, **kwargs) -> tuple[Path, str]:
    """:func:`fetch`, run by one process per node under ``torch.distributed``.

    The first local rank of each node downloads while the others wait at a barrier, then read the
    cache (with a shared cache the Hub's file locks make the nodes download it once in all). The
    barrier is reached even when the download fails, so that no rank hangs.
    """
    dist = _process_group()
    if dist is None:
        return fetch(*args, **kwargs)
    if _node_leader(dist):
        try:
            result = fetch(*args, **kwargs)
        except Exception:
            dist.barrier()
            raise
        dist.barrier()
        return result
    dist.barrier()
    return fetch(*args, **{**kwargs, "network": False})
