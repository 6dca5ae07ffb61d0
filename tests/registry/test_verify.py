"""zoo verify: a published model meets its card; a card that claims more than the model does fails."""

import json
import shutil
import warnings
from pathlib import Path

import pytest

import zoo

from zoo import recipes
from zoo.cli import main, parse_config
from zoo.registry import (
    MissingDataError,
    UntrustedCodeError,
    VerificationError,
    load_manifest,
    recipe_datamodule,
    recipe_test_set,
    verify_model,
)

NAME = "qm9-u0-demo"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))


def _copy(tmp_path, change):
    folder = tmp_path / "model"
    shutil.copytree(Path(zoo.__file__).parent / "_hub" / NAME, folder)
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("name", load_manifest().names())
def test_every_published_model_meets_its_card(offline, capsys, tmp_path, monkeypatch, name):
    info = load_manifest().get(name)
    try:
        recipe_datamodule(info, tmp_path, root=ROOT)
    except MissingDataError as error:  # data too big to commit, made by a command (data/README.md)
        pytest.skip(str(error))
    monkeypatch.chdir(tmp_path)  # the packaged recipe, the checkout's data
    assert main(["verify", name, "--root", str(ROOT)]) == 0
    assert f"{name} (recipes/" in capsys.readouterr().out


def test_a_card_claiming_a_lower_error_fails(offline, tmp_path):
    def better(config):
        config["metrics"]["values"]["U0_mae"] *= 0.9

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = verify_model(str(_copy(tmp_path, better)))
    assert not result.ok and result.failed == ["U0_mae"]
    # what a user sees (Python's default filters hide DeprecationWarning outside __main__): nothing;
    # Lightning's FutureWarning about its own use of torch's LeafSpec is filtered
    assert [str(w.message) for w in caught if not issubclass(w.category, DeprecationWarning)] == []
    assert result.measured["U0_mae"] == pytest.approx(result.card["U0_mae"] / 0.9, rel=1e-3)


def test_a_card_without_recipe_cannot_be_verified(offline, tmp_path):
    def no_recipe(config):
        config["recipe"] = "recipes/missing.yaml"

    with pytest.raises(VerificationError, match="recipes/missing.yaml"):
        verify_model(str(_copy(tmp_path, no_recipe)))


def test_a_recipe_file_under_the_root_wins_and_names_the_data_it_misses(offline, tmp_path):
    recipe = recipes.find("qm9_demo").read_text()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "qm9_demo.yaml").write_text(
        recipe.replace("source: qm9", "source: data/not_made/labels.h5"))
    with pytest.raises(MissingDataError, match="data/not_made/labels.h5.*data/README.md"):
        verify_model(NAME, root=tmp_path)


def test_the_recipe_a_card_names_imports_only_zoo_data_classes(tmp_path, evil):
    recipe = recipes.find("qm9_demo").read_text()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "qm9_demo.yaml").write_text(recipe.replace("zoo.data.AtomicDataModule", "evilmodel.Task"))
    with pytest.raises(UntrustedCodeError, match="qm9_demo.yaml: data.class_path names 'evilmodel.Task'"):
        recipe_datamodule(load_manifest().get(NAME), tmp_path / "split", root=tmp_path)
    assert not evil.exists()


def test_the_data_verified_are_those_zoo_fit_reads(tmp_path):
    """The data section of a card's recipe with its bases merged in, as `zoo fit --config` merges
    them (malonaldehyde_forcefield_dens: ethanol_forcefield's with malonaldehyde's files)."""
    manifest, checked = load_manifest(), []
    for name in manifest.names():
        info = manifest.get(name)
        try:
            module = recipe_datamodule(info, tmp_path / name, root=ROOT)
        except MissingDataError:
            continue
        fit = parse_config(["fit", "--config", info.recipe])["data"]["init_args"]
        def rooted(value):  # one path, a list of them (source: [a, b]), or {source, level} entries
            if isinstance(value, list):
                return [rooted(item) for item in value]
            if isinstance(value, dict) and "source" in value:
                return {**value, "source": rooted(value["source"])}
            return str(ROOT / value) if isinstance(value, str) and (ROOT / value).exists() else value

        fit = {key: rooted(value) for key, value in fit.items()}
        assert dict(module.hparams) == {**fit, "split_dir": str(tmp_path / name)}, name
        checked.append(name)
    assert "malonaldehyde-dens-pbe-def2svp" in checked and len(checked) >= 5


def test_a_test_set_of_its_own_file_is_read_without_the_training_data(tmp_path):
    # consistency-qm9-b3lyp-631gs-v2 trains on QM9 geometries made by a command (too big to commit);
    # its test set is a committed file of its own
    info = load_manifest().get("consistency-qm9-b3lyp-631gs-v2").info
    (tmp_path / "data" / "consistency").mkdir(parents=True)
    shutil.copy(ROOT / "data/consistency/qm9_test.extxyz", tmp_path / "data/consistency")
    with pytest.raises(MissingDataError, match="qm9_geometries.extxyz"):
        recipe_datamodule(info, tmp_path / "split", root=tmp_path)
    test = recipe_test_set(info, root=tmp_path)
    assert len(test) == 200 and test[0].to_ase().info["smiles"].startswith("[C:1]")
    with pytest.raises(MissingDataError, match="a split of its training data"):
        recipe_test_set(load_manifest().get(NAME).info, root=ROOT)
    (tmp_path / "data/consistency/qm9_test.extxyz").unlink()
    with pytest.raises(MissingDataError, match="qm9_test.extxyz.*data/README.md"):
        recipe_test_set(info, root=tmp_path)
