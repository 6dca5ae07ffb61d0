"""zoo verify: a published model meets its card; a card that claims more than the model does fails."""

import json
import shutil
from pathlib import Path

import pytest

import zoo

from zoo.cli import main
from zoo.registry import VerificationError, load_manifest, verify_model

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
