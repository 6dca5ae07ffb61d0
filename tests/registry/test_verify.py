"""zoo verify: a published model meets its card; a card that claims more than the model does fails."""

import json
import shutil
from pathlib import Path

import pytest

import zoo

from zoo.cli import main
from zoo.registry import (
    MissingDataError,
    UntrustedCodeError,
    VerificationError,
    load_manifest,
    recipe_datamodule,
    verify_model,
)

NAME = "qm9-u0-demo"


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
def test_every_published_model_meets_its_card(offline, capsys, name):
    info = load_manifest().get(name)
    try:
        recipe_datamodule(info, ".")
    except MissingDataError as error:  # data too big to commit, made by a command (data/README.md)
        pytest.skip(str(error))
    assert main(["verify", name]) == 0
    assert f"{name} (recipes/" in capsys.readouterr().out


def test_a_card_claiming_a_lower_error_fails(offline, tmp_path):
    def better(config):
        config["metrics"]["values"]["U0_mae"] *= 0.9

    result = verify_model(str(_copy(tmp_path, better)))
    assert not result.ok and result.failed == ["U0_mae"]
    assert result.measured["U0_mae"] == pytest.approx(result.card["U0_mae"] / 0.9, rel=1e-3)


def test_a_card_without_recipe_cannot_be_verified(offline, tmp_path):
    def no_recipe(config):
        config["recipe"] = "recipes/missing.yaml"

    with pytest.raises(VerificationError, match="recipes/missing.yaml"):
        verify_model(str(_copy(tmp_path, no_recipe)))


def test_a_recipe_whose_data_are_not_made_yet_names_them(offline, tmp_path):
    recipe = (Path(__file__).resolve().parents[2] / "recipes" / "qm9_demo.yaml").read_text()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "qm9_demo.yaml").write_text(
        recipe.replace("source: qm9", "source: data/not_made/labels.h5"))
    with pytest.raises(MissingDataError, match="data/not_made/labels.h5.*data/README.md"):
        verify_model(NAME, root=tmp_path)


def test_the_recipe_a_card_names_imports_only_zoo_data_classes(tmp_path, evil):
    recipe = (Path(__file__).resolve().parents[2] / "recipes" / "qm9_demo.yaml").read_text()
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "qm9_demo.yaml").write_text(recipe.replace("zoo.data.AtomicDataModule", "evilmodel.Task"))
    with pytest.raises(UntrustedCodeError, match="qm9_demo.yaml: data.class_path names 'evilmodel.Task'"):
        recipe_datamodule(load_manifest().get(NAME), tmp_path / "split", root=tmp_path)
    assert not evil.exists()
