"""The zoo command: LightningCLI subcommands on the recipes, and zoo's own tools."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from zoo import cli



def _zoo(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "zoo.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def test_print_config_resolves_the_recipe():
    result = _zoo("fit", "--config", "qm9_demo", "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    config = yaml.safe_load(result.stdout)
    backbone = config["model"]["init_args"]["model"]["init_args"]["backbone"]
    assert backbone["class_path"] == "zoo.models.EquivariantBackbone"
    assert backbone["init_args"]["radial_basis"] == "bessel"  # defaults filled in
    assert config["data"]["init_args"]["split"]["seed"] == 0


def test_the_qm9_control_overlay_differs_from_the_sct_recipe_only_in_mode_and_unlabelled_data():
    sct = cli.parse_config(["fit", "--config", "hamiltonian_qm9_sct"])
    control = cli.parse_config(["fit", "--config", "hamiltonian_qm9_control"])  # applies its base first
    assert (sct["model"]["init_args"].pop("mode"), control["model"]["init_args"].pop("mode")) == ("mixed", "supervised")
    assert sct["model"] == control["model"]  # same start, model, optimizer
    assert control["data"]["init_args"].pop("unlabelled_source") is None
    sct["data"]["init_args"].pop("unlabelled_source")
    assert sct["data"] == control["data"]
    assert sct["trainer"]["max_steps"] == control["trainer"]["max_steps"]


def test_a_class_that_does_not_exist_is_named(tmp_path):
    recipe = cli.parse_config(["fit", "--config", "qm9_demo"])
    recipe["model"]["init_args"]["model"]["init_args"]["backbone"]["class_path"] = "zoo.models.NoSuchBackbone"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(recipe))
    result = _zoo("fit", "--config", str(tmp_path / "bad.yaml"))
    assert result.returncode != 0
    assert "zoo.models.NoSuchBackbone" in result.stderr


def test_fit_on_embedded_qm9_writes_a_checkpoint_and_the_split(tmp_path):
    result = _zoo("fit", "--config", "qm9_demo", "--trainer.max_epochs", "1",
                  "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                  "--data.init_args.reader_kwargs", "{limit: 120}",
                  "--data.init_args.split", "{method: random, sizes: [80, 20, 20], seed: 0}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Tip" not in output and "LeafSpec" not in output  # Lightning's advert, and its own deprecations
    run = tmp_path / "runs" / "qm9_demo" / "version_0"
    assert (run / "split.npz").is_file() and (run / "config.yaml").is_file()
    assert sorted(p.name for p in (run / "checkpoints").glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]

    # the run's model, from its config and a checkpoint's weights (tensors only)
    from zoo.registry import CheckpointFormatError, UntrustedCodeError, load_run

    for ref, file in ((run, "last.ckpt"), (run / "checkpoints" / "best.ckpt", "best.ckpt")):
        task = load_run(ref)
        saved = torch.load(run / "checkpoints" / file, weights_only=True)["state_dict"]
        assert not task.training and type(task).__name__ == "AtomisticTask"
        assert all(torch.equal(task.state_dict()[k], v) for k, v in saved.items())
    with pytest.raises(CheckpointFormatError, match="checkpoints/first.ckpt does not exist"):
        load_run(run, checkpoint="first")
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config.replace("zoo.models.PropertyModel", "evil.Model"))
    with pytest.raises(UntrustedCodeError, match="evil.Model"):
        load_run(run)


def test_unknown_command_lists_the_commands(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0
    assert "fit, validate, test, predict" in capsys.readouterr().out


def test_fine_tune_from_a_registry_name(tmp_path):
    """`--model.init_args.pretrained NAME` starts the fit from the published weights (offline:
    the package copy), and statistics are re-fitted on the new training set."""
    import os

    from safetensors.torch import load_file

    import zoo

    probe = {"class_path": "ddp_probe.SaveRankParameters", "init_args": {"folder": str(tmp_path)}}
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=str(Path(__file__).parent / "tasks"))
    result = subprocess.run(
        [sys.executable, "-m", "zoo.cli", "fit", "--config", "qm9_demo",
         "--model.init_args.pretrained", "qm9-u0-demo", "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1",
         "--trainer.callbacks+", yaml.safe_dump(probe, default_flow_style=True).strip(),
         "--data.init_args.reader_kwargs", "{limit: 120}", "--data.init_args.split", "{method: random, sizes: [80, 20, 20], seed: 1}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    start = load_file(tmp_path / "rank0_start.safetensors")
    published = load_file(Path(zoo.__file__).parent / "_hub" / "qm9-u0-demo" / "model.safetensors")
    # every backbone tensor of the model comes from the file (which also holds the constants of
    # e3nn's tensor products that zoo used until 0.2, dropped on load)
    backbone = [k for k in start if k.startswith("model.backbone.")]
    assert backbone and all(torch.equal(start[k], published[k]) for k in backbone)
    # re-fitted on the new data (the published file keeps the layout of zoo 0.1.0, model.shift)
    assert not torch.equal(start["model.rescale.shift"], published["model.shift"])
