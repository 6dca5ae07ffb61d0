import copy
import json
import subprocess
import sys

import pytest

from zoo import recipes
from zoo.publish import check_folder
from zoo.registry import (
    CheckpointFormatError,
    ManifestError,
    ModelNotFoundError,
    default_manifest_path,
    list_models,
    load_manifest,
    parse_manifest,
)
from zoo.registry._manifest import CHECKOUT_MANIFEST, PACKAGE_MANIFEST


def test_entries_round_trip(registry):
    again = parse_manifest(registry.manifest.to_dict(), "again")
    assert again.models == registry.manifest.models
    entry = again.get("tiny-ho")
    assert entry.elements == ["H", "O"] and entry.revision == registry.entries["tiny-ho"]["revision"]
    assert set(entry.files) == {"config.json", "model.safetensors", "README.md"}
    assert list_models(manifest=registry.root / "checkpoints.json") == ["tiny-ho", "tiny-remote"]
    assert list_models(family="force-field", manifest=again) == []


def _broken(registry, change):
    data = copy.deepcopy(registry.data)
    change(data["models"][0])
    return data


@pytest.mark.parametrize("change, message", [
    (lambda e: e.update(revision="main"), "field 'revision': expected a pinned commit"),
    (lambda e: e["files"]["model.safetensors"].update(sha256="abc"), "file 'model.safetensors': key 'sha256'"),
    (lambda e: e["files"].pop("README.md"), "field 'files': missing \\['README.md'\\]"),
    (lambda e: e.pop("license"), "field 'license' is missing"),
    (lambda e: e.update(licence="mit"), "unknown field\\(s\\) \\['licence'\\]"),
    (lambda e: e.update(family="forcefield"), "field 'family': expected one of"),
    (lambda e: e.update(elements=["H", "Xx"]), "field 'elements': unknown element symbols \\['Xx'\\]"),
    (lambda e: e.update(zoo_versions="newest"), "field 'zoo_versions': expected a version specifier"),
    (lambda e: e.update(repo_id="no-org"), "field 'repo_id'"),
    (lambda e: e.pop("metrics"), "field 'metrics' is missing; a published model must declare it"),
    (lambda e: e["metrics"].pop("split"), "field 'metrics': missing key 'split'"),
    (lambda e: e["level_of_theory"].pop("xc"), "field 'level_of_theory': missing key 'xc'"),
    (lambda e: e.pop("level_of_theory"), "declare 'level_of_theory' \\(xc, basis, grid_level, ...\\) or 'data_source'"),
    (lambda e: e.update(checkpoint_format=0), "field 'checkpoint_format': expected a positive integer"),
])
def test_malformed_entry_names_entry_and_field(registry, change, message):
    with pytest.raises(ManifestError, match=f"model 'tiny-ho' \\(entry 0\\): .*{message}"):
        parse_manifest(_broken(registry, change), "checkpoints.json")


@pytest.mark.parametrize("change, message", [
    (lambda e: e["files"].update({"../../x": e["files"]["README.md"]}), "field 'files': unknown files \\['../../x'\\]"),
    (lambda e: e["files"].update({"/etc/passwd": e["files"]["README.md"]}), "field 'files': unknown files"),
    (lambda e: e.update(recipe="../../tmp/evil.yaml"), "field 'recipe': expected a YAML path as `zoo fit --config` takes it"),
    (lambda e: e.update(recipe="recipes/../../x.yaml"), "field 'recipe'"),
    (lambda e: e.update(recipe="/tmp/x.yaml"), "field 'recipe'"),
    (lambda e: e.update(recipe="C:\\x.yaml"), "field 'recipe'"),
    (lambda e: e.update(name="../evil"), "field 'name'"),
    (lambda e: e.update(repo_id="org/../x"), "field 'repo_id'"),
    (lambda e: e.update(repo_id="../x"), "field 'repo_id'"),
])
def test_names_in_a_manifest_cannot_leave_their_folder(registry, change, message):
    """File names, recipes, model names and repo ids become paths: none may point out of its folder."""
    with pytest.raises(ManifestError, match=message):
        parse_manifest(_broken(registry, change), "checkpoints.json")


def test_malformed_manifest(registry, tmp_path):
    data = copy.deepcopy(registry.data)
    data["models"].append(copy.deepcopy(data["models"][0]))
    with pytest.raises(ManifestError, match="entry 2.*'tiny-ho' is used by another entry"):
        parse_manifest(data)
    with pytest.raises(ManifestError, match="field 'format' must be 'zoo-manifest'"):
        parse_manifest({"models": []})
    with pytest.raises(ManifestError, match="entry 0: expected an object"):
        parse_manifest({"format": "zoo-manifest", "format_version": 1, "models": ["tiny"]})
    path = tmp_path / "checkpoints.json"
    path.write_text('{"format": "zoo-manifest", "models": [}')
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(path)


def test_unknown_name_lists_close_matches_and_all_names(registry):
    with pytest.raises(ModelNotFoundError, match="Did you mean 'tiny-ho'.*Known models: tiny-ho, tiny-remote"):
        registry.manifest.get("tiny-oh")
    with pytest.raises(ModelNotFoundError, match="no model named 'qm9'.*lists no models yet"):
        parse_manifest({"format": "zoo-manifest", "format_version": 1, "models": []}).get("qm9")


def test_zoo_version_range_is_enforced(registry):
    data = _broken(registry, lambda e: e.update(zoo_versions=">=99"))
    entry = parse_manifest(data).get("tiny-ho")
    with pytest.raises(CheckpointFormatError, match="zoo>=99, not by the installed zoo .*pip install 'zoo>=99'"):
        entry.check_zoo_version("0.0.1")


def test_the_repository_manifest_is_valid_and_shipped():
    """checkpoints.json loads, its package copy is identical, and every model is complete."""
    manifest = load_manifest()
    assert default_manifest_path() == CHECKOUT_MANIFEST
    assert json.loads(CHECKOUT_MANIFEST.read_text()) == json.loads(PACKAGE_MANIFEST.read_text())
    for entry in manifest.models:
        assert recipes.find(entry.recipe).is_relative_to(recipes.folder()), f"{entry.name}: {entry.recipe} not packaged"
        check_folder(manifest.hub_dir / entry.name, entry)


def test_older_manifests_spell_the_level_of_theory_as_the_card_did(registry):
    """Manifests 1 and 2 hold the card's {xc, basis, grid, code}; version 3 the fields of a LevelOfTheory."""
    old = copy.deepcopy(registry.data)
    for entry in old["models"]:
        entry["level_of_theory"] = {"xc": "b3lyp5", "basis": "def2-svp", "grid": 1, "code": "pyscf"}
    for version in (1, 2):
        assert parse_manifest({**old, "format_version": version}).models == registry.manifest.models
    with pytest.raises(ManifestError, match="field 'level_of_theory': unknown level-of-theory fields"):
        parse_manifest(old)  # the card's spelling in a version 3 manifest


def test_listing_models_does_not_import_torch():
    """`zoo list` and `zoo.list_models()` stay fast: the manifest is read without torch."""
    code = "import sys, zoo; zoo.list_models(); assert 'torch' not in sys.modules, 'torch was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_manifest_versions_up_to_this_zoos_are_read_and_newer_ones_refused():
    from zoo.registry._manifest import MANIFEST_VERSION

    for version in range(1, MANIFEST_VERSION + 1):
        assert parse_manifest({"format": "zoo-manifest", "format_version": version, "models": []}).models == []
    with pytest.raises(ManifestError, match=f"format_version {MANIFEST_VERSION + 1} is not one this zoo reads"):
        parse_manifest({"format": "zoo-manifest", "format_version": MANIFEST_VERSION + 1, "models": []})
