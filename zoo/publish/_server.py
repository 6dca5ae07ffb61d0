"""A local Hub: the published model folders as git repos, served by olah (PyPI ``olah``).

Each folder becomes one commit with a fixed author, committer, date and message, so the commit
id depends on the files alone: the same folder gives the same revision on every machine, which
is the revision the manifest pins. :func:`git_revision` computes it without git (for the
manifest); :func:`build_repo` writes the repo with git plumbing and checks the two agree.

olah serves git repos laid out as ``<mirrors-path>/models/<org>/<name>`` with the Hub's HTTP API
(``[accessibility] offline = true``: it never contacts huggingface.co), so ``hf_hub_download``
with ``HF_ENDPOINT`` pointing at it works unchanged: the way an air-gapped cluster gets the zoo.

olah runs as a child process that never outlives its parent: :meth:`LocalHub.stop` (and leaving the
``with`` block) ends its whole process group, and on Linux the kernel sends it SIGTERM when the parent
dies, even by SIGKILL. A port already in use is refused before anything starts, and the server counts
as started only once it answers the Hub API for a served model.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import hashlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from zoo.registry._errors import ManifestError, RegistryError
from zoo.registry._manifest import HUB_FILES, Manifest, as_manifest

log = logging.getLogger("zoo.publish")

#: Identity and time of every published commit: fixed, so that commit ids depend only on the files.
GIT_NAME = "zoo"
GIT_EMAIL = "zoo@users.noreply.huggingface.co"
GIT_TIME = 1704067200  # 2024-01-01T00:00:00Z
GIT_BRANCH = "main"


def _commit_message(name: str) -> str:
    return f"zoo model {name}\n"


def git_revision(folder: str | Path, name: str) -> str:
    """The commit id (sha1 hex) of ``folder``'s Hub files published as model ``name``.

    Git object ids are sha1 over ``"<type> <size>\\0" + content``: blobs of the files, a tree
    listing them (mode 100644, sorted by name), a commit naming the tree with the fixed identity.
    """

    def object_id(kind: str, body: bytes) -> bytes:
        return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).digest()

    folder = Path(folder)
    tree = b"".join(
        b"100644 " + f.encode() + b"\0" + object_id("blob", (folder / f).read_bytes()) for f in sorted(HUB_FILES)
    )
    signature = f"{GIT_NAME} <{GIT_EMAIL}> {GIT_TIME} +0000"
    commit = (f"tree {object_id('tree', tree).hex()}\nauthor {signature}\ncommitter {signature}\n\n"
              + _commit_message(name)).encode()
    return object_id("commit", commit).hex()


def _git(args: list[str], cwd: Path, stdin: str | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": GIT_NAME, "GIT_AUTHOR_EMAIL": GIT_EMAIL, "GIT_AUTHOR_DATE": f"{GIT_TIME} +0000",
        "GIT_COMMITTER_NAME": GIT_NAME, "GIT_COMMITTER_EMAIL": GIT_EMAIL, "GIT_COMMITTER_DATE": f"{GIT_TIME} +0000",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    if shutil.which("git") is None:
        raise RegistryError("git is needed to build the local Hub's repositories; install git")
    # user config must not sign commits or rewrite line endings: either would change the commit id
    command = ["git", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false", *args]
    result = subprocess.run(command, cwd=cwd, env=env, input=stdin, capture_output=True, text=True)
    if result.returncode:
        raise RegistryError(f"{' '.join(command)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout.strip()


def build_repo(folder: str | Path, repo_dir: str | Path, name: str) -> str:
    """Write a bare git repo at ``repo_dir`` whose ``main`` is ``folder`` published as ``name``.

    Any previous repo there is replaced. Returns the commit id, equal to :func:`git_revision`.
    """
    folder, repo_dir = Path(folder).resolve(), Path(repo_dir).resolve()
    missing = [f for f in HUB_FILES if not (folder / f).is_file()]
    if missing:
        raise RegistryError(f"{folder} lacks {missing}; a model folder has {list(HUB_FILES)}")
    shutil.rmtree(repo_dir, ignore_errors=True)
    repo_dir.mkdir(parents=True)
    _git(["init", "-q", "--bare", "--template=", "."], repo_dir)
    entries = [f"100644 blob {_git(['hash-object', '-w', '--no-filters', str(folder / f)], repo_dir)}\t{f}"
               for f in sorted(HUB_FILES)]
    tree = _git(["mktree"], repo_dir, stdin="\n".join(entries) + "\n")
    commit = _git(["commit-tree", tree, "-F", "-"], repo_dir, stdin=_commit_message(name))
    _git(["update-ref", f"refs/heads/{GIT_BRANCH}", commit], repo_dir)
    _git(["symbolic-ref", "HEAD", f"refs/heads/{GIT_BRANCH}"], repo_dir)
    expected = git_revision(folder, name)
    if commit != expected:
        raise RegistryError(f"git wrote commit {commit} for {folder}, expected {expected}; check the git config")
    return commit


def build_mirrors(manifest: Manifest, models_dir: str | Path, mirrors_path: str | Path) -> dict[str, str]:
    """One repo per manifest model found in ``models_dir/<name>``, at ``mirrors_path/models/<repo_id>``.

    Returns ``{name: revision}``. A folder whose commit is not the manifest's pinned revision is a
    :class:`ManifestError` (it changed after publishing).
    """
    models_dir, built = Path(models_dir), {}
    for entry in manifest.models:
        folder = models_dir / entry.name
        if not folder.is_dir():
            log.warning("local hub: no folder %s for model %r; not served", folder, entry.name)
            continue
        revision = build_repo(folder, Path(mirrors_path) / "models" / entry.repo_id, entry.name)
        if revision != entry.revision:
            raise ManifestError(
                f"{manifest.source}: model {entry.name!r}: field 'revision': {folder} publishes as {revision}, "
                f"the manifest pins {entry.revision}; the folder changed since it was published (re-add it with "
                "`zoo hub add`) or the manifest is stale"
            )
        built[entry.name] = revision
    if not built:
        raise RegistryError(f"no model folders of {manifest.source} found in {models_dir}; nothing to serve")
    return built


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`RegistryError` naming the port and the fix if ``host:port`` cannot be listened on."""
    with socket.socket() as s:
        # as the server itself binds: a port left in TIME_WAIT by a server that just stopped is free
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise RegistryError(
                    f"cannot listen on {host}:{port}: {error.strerror}; check --host and --port") from None
            raise RegistryError(
                f"port {port} on {host} is already in use (another `zoo hub serve`, or another server). Stop it, "
                f"or serve on another port: zoo hub serve --port {port + 1 if port < 65535 else port - 1} "
                "(LocalHub(port=None) takes a free one)"
            ) from None


def _die_with_parent(parent: int) -> None:
    """In the child, before it runs olah: ask Linux to send it SIGTERM when its parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


class LocalHub:
    """Serve the manifest's model folders over the Hub API with olah; a context manager.

    >>> with LocalHub(port=None, workdir="/tmp/hub") as hub:      # doctest: +SKIP
    ...     os.environ["HF_ENDPOINT"] = hub.endpoint
    ...     zoo.load("qm9-u0-demo")

    Args:
        manifest: the models to serve (default: zoo's own manifest).
        models_dir: where their folders are (default: the manifest's package copies, ``zoo/_hub``).
        workdir: holds the git repos (``mirrors/``), olah's config, cache and log (default:
            ``~/.cache/zoo/hub``).
        host, port: where to listen; ``port=None`` takes a free port, a port in use is a
            :class:`RegistryError`.
        timeout: seconds to wait for the server to answer.

    On Linux olah is stopped when the thread that started it ends: start it from the main thread,
    or from a thread that lives as long as the server should.
    """

    def __init__(self, manifest: Manifest | str | Path | None = None, models_dir: str | Path | None = None,
                 workdir: str | Path | None = None, host: str = "127.0.0.1", port: int | None = 8090,
                 timeout: float = 30.0):
        self.manifest = as_manifest(manifest)
        self.models_dir = Path(models_dir if models_dir is not None else self.manifest.hub_dir).resolve()
        self.workdir = Path(workdir if workdir is not None else Path.home() / ".cache" / "zoo" / "hub").resolve()
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.timeout = timeout
        self.process: subprocess.Popen | None = None
        self.revisions: dict[str, str] = {}

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.workdir / "olah.out"

    def write_config(self) -> Path:
        """Build the repos and olah's TOML config; returns the config path."""
        mirrors = self.workdir / "mirrors"
        self.revisions = build_mirrors(self.manifest, self.models_dir, mirrors)
        config = self.workdir / "olah.toml"
        # offline: olah never contacts huggingface.co, and answers only from mirrors-path
        config.write_text(
            "[basic]\n"
            f'host = "{self.host}"\nport = {self.port}\n'
            f'repos-path = "{(self.workdir / "cache").as_posix()}"\n'
            f'mirrors-path = ["{mirrors.as_posix()}"]\n'
            "[accessibility]\noffline = true\n",
            encoding="utf-8",
        )
        return config

    def start(self) -> "LocalHub":
        """Build the repos, start olah and return once it answers; on any failure, olah is stopped."""
        if importlib.util.find_spec("olah") is None:
            raise RegistryError("the local Hub needs olah: pip install olah")
        check_port_free(self.host, self.port)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.write_config()
        try:
            with open(self.log_file, "wb") as out:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "olah.server", "--config", str(config),
                     "--log-path", str(self.workdir / "logs")],
                    stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir,
                    # its own process group, so that stop() ends whatever olah starts, and a Ctrl-C in
                    # the terminal reaches only the parent, which stops olah itself
                    start_new_session=os.name == "posix",
                    preexec_fn=functools.partial(_die_with_parent, os.getpid()) if sys.platform == "linux" else None,
                )
            self._wait_until_up()
        except BaseException:  # including a KeyboardInterrupt or SIGTERM while waiting
            self.stop()
            raise
        log.info("local hub: %d models at %s (olah pid %d)", len(self.revisions), self.endpoint, self.process.pid)
        return self

    def _probe_url(self) -> str:
        """A Hub API request that only a server of these repos answers with 200."""
        name, revision = next(iter(self.revisions.items()))
        return f"{self.endpoint}/api/models/{self.manifest.get(name).repo_id}/revision/{revision}"

    def _wait_until_up(self) -> None:
        url, deadline = self._probe_url(), time.monotonic() + self.timeout
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through http_proxy
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_file.read_text(errors="replace")[-2000:]
                raise RegistryError(f"olah exited with code {self.process.returncode}:\n{tail}")
            try:
                with direct.open(url, timeout=2) as response:
                    answered = response.status == 200
            except OSError:  # not listening yet, or not serving yet (an HTTP error status)
                answered = False
            if answered and self.process.poll() is None:
                return
            time.sleep(0.1)
        raise RegistryError(f"olah did not answer {url} within {self.timeout} s; see {self.log_file}")

    def stop(self) -> None:
        """Stop olah and anything it started (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is None:
            return
        if self.process.poll() is None:  # once reaped, its pid may be another process's
            self._signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._signal(getattr(signal, "SIGKILL", signal.SIGTERM))
                self.process.wait()
        self.process = None

    def _signal(self, number: int) -> None:
        try:
            if os.name == "posix":
                os.killpg(self.process.pid, number)  # olah's own group (start_new_session)
            else:
                self.process.kill()  # no process groups to signal: TerminateProcess
        except ProcessLookupError:  # exited meanwhile
            pass

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
