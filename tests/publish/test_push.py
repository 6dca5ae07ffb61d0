import json
import shutil

import pytest

import zoo
from zoo.publish import add_model, build_repo, check_folder, git_revision, manifest_entry, push
from zoo.publish.commands import hub_main
from zoo.registry import FORMAT_VERSION, HUB_FILES, IntegrityError, ModelEntry, load_manifest, parse_manifest


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_published_commit_depends_on_the_files_only(registry, tmp_path):
    folder = registry.served / "tiny-ho"
    revision = registry.entries["tiny-ho"]["revision"]
    assert git_revision(folder, "tiny-ho") == revision
    assert build_repo(folder, tmp_path / "a", "tiny-ho") == build_repo(folder, tmp_path / "b", "tiny-ho") == revision
    (tmp_path / "copy").mkdir()
    for name in HUB_FILES:
        shutil.copy(folder / name, tmp_path / "copy" / name)
    (tmp_path / "copy" / "notes.txt").write_text("not published")
    assert git_revision(tmp_path / "copy", "tiny-ho") == revision


def test_entry_from_folder(registry):
    entry = manifest_entry(registry.served / "tiny-ho", "zoo-test/tiny-ho")
    assert entry.to_dict() == registry.entries["tiny-ho"]
    assert entry.zoo_versions == f">={zoo.__version__}" and entry.checkpoint_format == FORMAT_VERSION
    check_folder(registry.served / "tiny-ho", entry)


def test_card_front_matter_must_agree_with_the_manifest(registry):
    entry = ModelEntry.from_dict({**registry.entries["tiny-ho"], "license": "apache-2.0"}, "test")
    with pytest.raises(IntegrityError, match="README.md front matter: license 'mit' != manifest 'apache-2.0'"):
        check_folder(registry.served / "tiny-ho", entry)


def test_push_dry_run_builds_and_checks_the_exact_folder(registry, tmp_path):
    shutil.copytree(registry.package, tmp_path / "package")
    (tmp_path / "package" / "tiny-ho" / ".DS_Store").write_text("junk")
    manifest = parse_manifest(registry.data, "checkpoints.json", tmp_path / "package")
    built = push("tiny-ho", manifest=manifest, dry_run=True, out=tmp_path / "out")
    assert sorted(p.name for p in built.iterdir()) == sorted(HUB_FILES)
    check_folder(built, manifest.get("tiny-ho"))
    config = tmp_path / "package" / "tiny-ho" / "config.json"
    config.write_text(config.read_text().replace('"mit"', '"MIT-0"'))
    with pytest.raises(IntegrityError, match="does not match manifest entry 'tiny-ho':\n  config.json: size"):
        push("tiny-ho", manifest=manifest, dry_run=True)


def test_hub_push_command_dry_run(registry, tmp_path, capsys):
    argv = ["push", "tiny-ho", "--dry-run", "--out", str(tmp_path / "out"),
            "--manifest", str(registry.root / "checkpoints.json"), "--hub-dir", str(registry.package)]
    assert hub_main(argv) == 0
    assert "matches the manifest; nothing uploaded" in capsys.readouterr().out
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_add_publishes_a_folder_in_one_command(registry, tmp_path, capsys):
    manifest_path = tmp_path / "checkpoints.json"
    argv = [str(registry.served / "tiny-remote"), "--repo-id", "zoo-test/tiny-remote",
            "--manifest", str(manifest_path), "--hub-dir", str(tmp_path / "hub")]
    assert hub_main(["add", *argv]) == 0
    revision = registry.entries["tiny-remote"]["revision"]
    assert f"added tiny-remote: zoo-test/tiny-remote@{revision}" in capsys.readouterr().out
    manifest = load_manifest(manifest_path, tmp_path / "hub")
    assert manifest.names() == ["tiny-remote"]
    check_folder(tmp_path / "hub" / "tiny-remote", manifest.get("tiny-remote"))
    # adding again replaces the entry instead of duplicating it
    add_model(registry.served / "tiny-remote", "zoo-test/other", manifest_path, tmp_path / "hub", ">=0.0.1,<1")
    entries = json.loads(manifest_path.read_text())["models"]
    assert [(e["name"], e["repo_id"], e["zoo_versions"]) for e in entries] == [
        ("tiny-remote", "zoo-test/other", ">=0.0.1,<1")]


def test_a_published_model_is_never_overwritten_and_a_successor_supersedes_it(registry, tmp_path, monkeypatch):
    manifest_path, hub = tmp_path / "checkpoints.json", tmp_path / "hub"
    add_model(registry.served / "tiny-ho", "zoo-test/tiny-ho", manifest_path, hub)
    # other weights under the published name: refused, with the way to publish them
    other = tmp_path / "other" / "tiny-ho"
    shutil.copytree(registry.served / "tiny-remote", other)
    config = json.loads((other / "config.json").read_text())
    config["name"] = "tiny-ho"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(zoo.registry.ManifestError, match="never overwritten.*--supersedes tiny-ho"):
        add_model(other, "zoo-test/tiny-ho", manifest_path, hub)
    with pytest.raises(zoo.registry.ManifestError, match="--supersedes 'nope': no such model"):
        add_model(registry.served / "tiny-remote", "zoo-test/tiny-remote", manifest_path, hub, supersedes="nope")
    # a successor under a new name marks the old one; both stay in the manifest and loadable
    add_model(registry.served / "tiny-remote", "zoo-test/tiny-remote", manifest_path, hub, supersedes="tiny-ho")
    manifest = load_manifest(manifest_path, hub)
    assert manifest.get("tiny-ho").superseded_by == "tiny-remote" and manifest.get("tiny-remote").superseded_by is None
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.warns(zoo.registry.SupersededModelWarning, match="'tiny-ho' is superseded by 'tiny-remote'"):
        zoo.registry.download("tiny-ho", manifest=manifest, cache_dir=tmp_path / "cache")
    # a dangling successor is a manifest error
    data = json.loads(manifest_path.read_text())
    data["models"] = [m for m in data["models"] if m["name"] == "tiny-ho"]
    with pytest.raises(zoo.registry.ManifestError, match="superseded_by.*must name another model"):
        parse_manifest(data)
