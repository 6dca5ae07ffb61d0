"""The registry against a real Hub server: olah on 127.0.0.1 serving deterministic git repos."""

import copy
import http.server
import json
import logging
import shutil
import threading
from pathlib import Path

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.publish import LocalHub
from zoo.registry import (
    FORMAT_VERSION,
    CheckpointFormatError,
    DownloadError,
    IntegrityError,
    parse_manifest,
    sha256_file,
)
from zoo.registry._hub import _unlink_within

pytest.importorskip("olah", reason="the local Hub needs olah: pip install olah")
if shutil.which("git") is None:
    pytest.skip("the local Hub needs git", allow_module_level=True)


def _same_outputs(task, reference, batch):
    with torch.no_grad():
        return torch.allclose(task(batch)["energy"], reference(batch)["energy"])


def test_load_by_name_downloads_verifies_then_uses_the_cache(registry, local_hub, hub_env, tiny):
    task = zoo.load("tiny-remote", manifest=registry.manifest)
    info = task.registry_info
    assert info.source == f"{local_hub.endpoint} (downloaded)" and not task.training
    assert info.folder.name == registry.entries["tiny-remote"]["revision"]  # snapshots/<pinned commit>
    assert info.folder.is_relative_to(hub_env)
    assert _same_outputs(task, registry.tasks["tiny-remote"], tiny.batch())
    assert zoo.load("tiny-remote", manifest=registry.manifest).registry_info.source == "the Hugging Face cache"


def test_pinned_revision_and_branch(registry, hub_env):
    revision = registry.entries["tiny-remote"]["revision"]
    task = zoo.load(f"hf://zoo-test/tiny-remote@{revision}", manifest=registry.manifest)
    assert task.registry_info.name == "tiny-remote"  # the manifest pins it: verified
    assert task.registry_info.folder.name == revision
    # a branch resolves to the same deterministic commit
    assert zoo.download("hf://zoo-test/tiny-remote", manifest=registry.manifest).name == revision


def test_missing_revision_or_repo(registry, hub_env):
    data = copy.deepcopy(registry.data)
    revision = registry.entries["tiny-remote"]["revision"]
    data["models"][1]["revision"] = "1" * 40
    stale = parse_manifest(data, "stale.json")
    with pytest.raises(DownloadError, match=f"revision '1{{40}}' does not exist in zoo-test/tiny-remote at "
                                            f".*main -> {revision}.*holds another build"):
        zoo.load("tiny-remote", manifest=stale)
    with pytest.raises(DownloadError, match="revision 'nope' does not exist"):
        zoo.load("hf://zoo-test/tiny-remote@nope", manifest=registry.manifest)
    with pytest.raises(DownloadError, match="repository zoo-test/nothing was not found.*HF_TOKEN"):
        zoo.load("hf://zoo-test/nothing", manifest=registry.manifest)


@pytest.mark.parametrize("revision", ["../../x", "main/../../x", ".."])
def test_a_revision_cannot_climb_out_of_the_cache(registry, hub_env, revision):
    with pytest.raises(DownloadError, match="bad Hub reference"):
        zoo.load(f"hf://zoo-test/tiny-remote@{revision}", manifest=registry.manifest)


def test_cache_hit_with_the_server_stopped(registry, monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with LocalHub(registry.manifest, registry.served, tmp_path / "hub", port=None) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        zoo.download("tiny-remote", manifest=registry.manifest)
    assert zoo.load("tiny-remote", manifest=registry.manifest).registry_info.source == "the Hugging Face cache"
    # not cached and the server is gone: the package copy if there is one, else the fix
    with caplog.at_level(logging.WARNING, logger="zoo.registry"):
        assert zoo.load("tiny-ho", manifest=registry.manifest).registry_info.folder == registry.package / "tiny-ho"
    assert f"the Hub at {hub.endpoint} is unreachable" in caplog.text
    shutil.rmtree(tmp_path / "hf-cache")
    with pytest.raises(DownloadError, match="cannot reach the Hub at http://127.0.0.1.*HF_ENDPOINT"):
        zoo.load("tiny-remote", manifest=registry.manifest)


@pytest.mark.parametrize("damage", ["tamper", "truncate"])
def test_damaged_cache_entry_is_an_error_and_is_not_reused(registry, local_hub, hub_env, damage):
    weights = zoo.download("tiny-remote", manifest=registry.manifest) / "model.safetensors"
    blob = weights.resolve()
    data = bytearray(blob.read_bytes())
    if damage == "tamper":
        data[-1] ^= 0xFF
    blob.write_bytes(data if damage == "tamper" else data[: len(data) // 2])
    with pytest.raises(IntegrityError, match="model.safetensors: (sha256|size).*tampered with or truncated.*"
                                             "was deleted and will not be reused"):
        zoo.load("tiny-remote", manifest=registry.manifest)
    assert not weights.exists() and not blob.exists()
    task = zoo.load("tiny-remote", manifest=registry.manifest)
    assert task.registry_info.source == f"{local_hub.endpoint} (downloaded)"


def test_offline_with_an_empty_cache(registry, hub_env, monkeypatch, caplog, tmp_path, tiny):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="not in the Hugging Face cache.*HF_HUB_OFFLINE is set.*zoo download"):
        zoo.load("tiny-remote", manifest=registry.manifest)
    # a published model still loads, from the package's own copy, without a word: offline was asked for
    with caplog.at_level(logging.WARNING, logger="zoo.registry"):
        task = zoo.load("tiny-ho", manifest=registry.manifest)
    assert task.registry_info.source == f"the zoo package ({registry.package / 'tiny-ho'})"
    assert not caplog.records
    assert _same_outputs(task, registry.tasks["tiny-ho"], tiny.batch())
    # ... which is checked like any other copy
    shutil.copytree(registry.package, tmp_path / "package")
    with open(tmp_path / "package" / "tiny-ho" / "README.md", "a") as f:
        f.write("edited\n")
    damaged = parse_manifest(registry.data, "checkpoints.json", tmp_path / "package")
    with pytest.raises(IntegrityError, match="package copy of 'tiny-ho'.*README.md"):
        zoo.load("tiny-ho", manifest=damaged)


def test_checkpoint_newer_than_zoo_is_refused_before_downloading(registry, hub_env):
    data = copy.deepcopy(registry.data)
    data["models"][1]["checkpoint_format"] = 99
    with pytest.raises(CheckpointFormatError, match=f"checkpoint format 99.*reads formats up to {FORMAT_VERSION}"):
        zoo.load("tiny-remote", manifest=parse_manifest(data))
    assert not hub_env.exists()


def test_commands(registry, hub_env, capsys):
    where = ["--manifest", str(registry.root / "checkpoints.json"), "--hub-dir", str(registry.package)]
    assert main(["info", "tiny-remote", *where]) == 0
    revision = registry.entries["tiny-remote"]["revision"]
    assert f"Hub              zoo-test/tiny-remote@{revision}" in capsys.readouterr().out
    assert main(["info", "tiny-remote", "--raw", *where]) == 0
    assert "# tiny-remote" in capsys.readouterr().out
    assert main(["download", "tiny-remote", *where]) == 0
    assert str(hub_env) in capsys.readouterr().out
    assert main(["download", "tiny-rmote", *where]) == 1
    assert "Did you mean 'tiny-remote'" in capsys.readouterr().err


@pytest.mark.parametrize("content", ["other bytes", "the pinned bytes"])
def test_a_link_out_of_a_shared_cache_is_refused_and_its_target_kept(registry, local_hub, hub_env, tmp_path, content):
    """Whoever can write to a shared HF_HUB_CACHE can plant links: zoo neither reads nor deletes their targets."""
    pointer = zoo.download("tiny-remote", manifest=registry.manifest) / "config.json"
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"another user's file" if content == "other bytes" else pointer.read_bytes())
    pointer.unlink()
    pointer.symlink_to(victim)
    with pytest.raises(IntegrityError, match="config.json: the cache entry .* leads out of the cache folder of "
                                             "zoo-test/tiny-remote.*not read.*the link was removed"):
        zoo.load("tiny-remote", manifest=registry.manifest)
    assert victim.exists() and not pointer.is_symlink()
    assert content == "the pinned bytes" or victim.read_bytes() == b"another user's file"
    assert zoo.load("tiny-remote", manifest=registry.manifest).registry_info.source.endswith("(downloaded)")


def test_a_snapshot_folder_linked_out_of_the_cache_is_refused_and_kept(registry, local_hub, hub_env, tmp_path):
    snapshot = zoo.download("tiny-remote", manifest=registry.manifest)
    victim = tmp_path / "victim"
    victim.mkdir()
    for name in ("config.json", "model.safetensors", "README.md"):
        (victim / name).write_text("another user's file")
    shutil.rmtree(snapshot)
    snapshot.symlink_to(victim)
    with pytest.raises(IntegrityError, match="leads out of the cache folder.*remove it"):
        zoo.load("tiny-remote", manifest=registry.manifest)
    assert sorted(p.read_text() for p in victim.iterdir()) == ["another user's file"] * 3


def test_deleting_a_cache_entry_follows_no_link_on_the_way(tmp_path):
    """A folder swapped for a link between the check and the delete stops the delete."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "blob").write_text("keep")
    (tmp_path / "cache" / "models--o--n").mkdir(parents=True)
    (tmp_path / "cache" / "models--o--n" / "blobs").symlink_to(outside)
    assert not _unlink_within(tmp_path / "cache", Path("models--o--n/blobs/blob"))
    assert (outside / "blob").read_text() == "keep"


class _CutOffHub(http.server.BaseHTTPRequestHandler):
    """A Hub that answers the metadata but breaks every file off halfway, like a mirror that stopped."""

    served: Path
    revisions: dict[str, str]

    def do_GET(self):
        parts = self.path.split("/")
        if parts[1] == "api":  # /api/models/<org>/<name>/revision/<revision>
            body = json.dumps({"id": f"{parts[3]}/{parts[4]}", "sha": parts[6]}).encode()
            self._headers(body, {"Content-Type": "application/json"})
            self.wfile.write(body)
        else:
            data = self._headers(*self._file())
            self.wfile.write(data[: len(data) // 2])  # then the connection closes

    def do_HEAD(self):
        self._headers(*(self._file() if self.path != "/" else (b"", {})))  # "/": zoo's is-anyone-there

    def _file(self) -> tuple[bytes, dict[str, str]]:
        _, org, name, _, revision, filename = self.path.split("/")  # /<org>/<name>/resolve/<revision>/<file>
        path = self.served / name / filename
        return path.read_bytes(), {"X-Repo-Commit": revision, "ETag": f'"{sha256_file(path)}"'}

    def _headers(self, body: bytes, headers: dict[str, str]) -> bytes:
        self.send_response(200)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        return body

    def log_message(self, *args):
        pass


@pytest.fixture
def cut_off_hub(registry, monkeypatch, tmp_path):
    handler = type("Handler", (_CutOffHub,), {"served": registry.served})
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield
        server.shutdown()


def test_a_download_cut_off_midway_falls_back_or_says_what_to_do(registry, cut_off_hub, caplog, monkeypatch):
    from huggingface_hub import file_download

    monkeypatch.setattr(file_download.time, "sleep", lambda seconds: None)  # its 5 resumes wait a second each
    with pytest.raises(DownloadError, match="tiny-remote.*downloading config.json from http://127.0.0.1:.* broke off "
                                            r"\(RemoteProtocolError.*Run again.*HF_ENDPOINT"):
        zoo.load("tiny-remote", manifest=registry.manifest)
    with caplog.at_level(logging.WARNING, logger="zoo.registry"):
        task = zoo.load("tiny-ho", manifest=registry.manifest)
    assert task.registry_info.folder == registry.package / "tiny-ho"
    assert "broke off" in caplog.text
