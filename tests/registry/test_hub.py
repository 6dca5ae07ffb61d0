"""The registry against a real Hub server: olah on 127.0.0.1 serving deterministic git repos."""

import copy
import logging
import shutil

import pytest
import torch

import zoo
from zoo.cli import main
from zoo.registry import CheckpointFormatError, DownloadError, IntegrityError, LocalHub, parse_manifest

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
    assert "cannot reach the Hub" in caplog.text
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
    # a published model still loads, from the package's own copy, and says so
    with caplog.at_level(logging.WARNING, logger="zoo.registry"):
        task = zoo.load("tiny-ho", manifest=registry.manifest)
    assert task.registry_info.source == f"the zoo package ({registry.package / 'tiny-ho'})"
    assert "using the copy of 'tiny-ho' shipped with the zoo package" in caplog.text
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
    with pytest.raises(CheckpointFormatError, match="checkpoint format 99.*reads formats up to 1"):
        zoo.load("tiny-remote", manifest=parse_manifest(data))
    assert not hub_env.exists()


def test_commands(registry, hub_env, capsys):
    where = ["--manifest", str(registry.root / "checkpoints.json"), "--hub-dir", str(registry.package)]
    assert main(["list", *where]) == 0
    revision = registry.entries["tiny-ho"]["revision"]
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[1] == ["tiny-ho", "property", "PropertyModel(EquivariantBackbone)", "H,O",
                       f"zoo-test/tiny-ho@{revision[:8]}", "mit"]
    assert main(["info", "tiny-remote", *where]) == 0
    assert "# tiny-remote" in capsys.readouterr().out
    assert main(["download", "tiny-remote", *where]) == 0
    assert str(hub_env) in capsys.readouterr().out
    assert main(["download", "tiny-rmote", *where]) == 1
    assert "Did you mean 'tiny-remote'" in capsys.readouterr().err
