"""The zoo command: LightningCLI subcommands on the recipes, and zoo's own tools."""

import subprocess
import sys
from pathlib import Path

import yaml

from zoo import cli

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _zoo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_print_config_resolves_the_recipe():
    result = _zoo("fit", "--config", str(RECIPES / "qm9_demo.yaml"), "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    backbone = config["model"]["init_args"]["model"]["init_args"]["backbone"]
    assert backbone["class_path"] == "zoo.models.EquivariantBackbone"
    assert backbone["init_args"]["radial_basis"] == "bessel"  # defaults filled in
    assert config["data"]["init_args"]["split"]["seed"] == 0


def test_a_class_that_does_not_exist_is_named(tmp_path):
    recipe = yaml.safe_load((RECIPES / "qm9_demo.yaml").read_text())
    recipe["model"]["init_args"]["model"]["init_args"]["backbone"]["class_path"] = "zoo.models.NoSuchBackbone"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(recipe))
    result = _zoo("fit", "--config", str(tmp_path / "bad.yaml"))
    assert result.returncode != 0
    assert "zoo.models.NoSuchBackbone" in result.stderr


def test_fit_on_embedded_qm9_writes_a_checkpoint_and_the_split(tmp_path):
    result = _zoo("fit", "--config", str(RECIPES / "qm9_demo.yaml"), "--trainer.max_epochs", "1",
                  "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                  "--data.init_args.reader_kwargs", "{limit: 120}",
                  "--data.init_args.split", "{method: random, sizes: [80, 20, 20], seed: 0}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "qm9_demo" / "version_0"
    assert (run / "split.npz").is_file() and (run / "config.yaml").is_file()
    assert list((run / "checkpoints").glob("*.ckpt"))


def test_unknown_command_lists_the_commands(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "fit, validate, test, predict" in capsys.readouterr().out
