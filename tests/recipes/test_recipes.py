"""The packaged recipes: the same configs as the recipes that trained the published models, found by
name from any folder, overlays applied on their bases, listed, shown and copied by `zoo recipes`."""

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from zoo import recipes
from zoo.cli import main, parse_config

ROOT = Path(__file__).resolve().parents[2]
#: The recipes as they were at the last commit before they moved into the package, each as the
#: --config files it was run with (see the file's "about").
PUBLISHED = json.loads((Path(__file__).parent / "published_recipes.json").read_text(encoding="utf-8"))["configs"]
#: Defaults changed since those runs, at their value then: a recipe that trained a model pins them.
CHANGED_DEFAULTS = {".model.init_args.dens.init_args.bounded_encoding": False}
#: recipes that trained their model after those changes: compared as they are
AFTER_THE_CHANGES = {"organic_multifidelity"}


def _flat(value, prefix=""):
    """``{"a.b[0].c": leaf}``: a failing comparison names the keys that differ."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def test_every_published_recipe_is_packaged_and_runs_on_its_own():
    assert set(PUBLISHED) == set(recipes.names(add_ons=False))
    assert set(recipes.names()) - set(PUBLISHED) == {"anneal", "dens", "long_training"}  # add-ons: `--config RECIPE --config dens`
    with pytest.raises(SystemExit):  # no model: not a recipe by itself
        parse_config(["fit", "--config", "dens"])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_a_packaged_recipe_runs_the_config_that_trained_its_model(name, tmp_path):
    before = []
    for number, config in enumerate(PUBLISHED[name]):
        (tmp_path / f"{number}.json").write_text(json.dumps(config), encoding="utf-8")
        before += ["--config", str(tmp_path / f"{number}.json")]
    trained = _flat(parse_config(["fit", *before]))
    if name not in AFTER_THE_CHANGES:
        trained.update({key: value for key, value in CHANGED_DEFAULTS.items() if key in trained})
    assert _flat(parse_config(["fit", "--config", name])) == trained


def test_the_recipe_a_card_names_is_the_one_that_exports_it():
    for card in sorted((recipes.folder() / "cards").glob("*.yaml")):
        named = recipes.read(card)["init_args"]["card"]["recipe"]  # as published: recipes/<name>.yaml
        assert card in recipes.references(recipes.find(named)), card.name


@pytest.mark.parametrize("name", recipes.names(add_ons=False))
def test_a_card_is_read_as_the_text_it_was_written_as(name):
    # the recipe parser reads 'text: more text' inside a string as a mapping; the export would
    # refuse such a card only after training
    for callback in parse_config(["fit", "--config", name])["trainer"]["callbacks"]:
        if callback["class_path"].endswith("ExportPretrained"):
            card = callback["init_args"]["card"]
            assert {key: type(card[key]) for key in ("name", "family", "license", "description", "recipe")} == dict.fromkeys(
                ("name", "family", "license", "description", "recipe"), str), name


def test_a_recipe_runs_by_name_from_a_folder_without_recipes(tmp_path):
    # the form a model card gives (recipes/<name>.yaml) names the packaged recipe too
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config",
                             "recipes/malonaldehyde_forcefield_dens.yaml", "--print_config"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    config = yaml.safe_load(result.stdout)
    assert config["data"]["init_args"]["source"] == "data/malonaldehyde/malonaldehyde_pbe_def2svp_train.extxyz"
    assert config["model"]["init_args"]["dens"]["init_args"]["probability"] == 0.25  # the dens add-on
    export = config["trainer"]["callbacks"][-1]
    assert export["init_args"]["card"]["name"] == "malonaldehyde-dens-pbe-def2svp"  # its card file
    assert config["trainer"]["logger"]["init_args"]["save_dir"] == "runs/malonaldehyde_forcefield_dens"
    assert "base" not in config  # read, and not written into the run's config.yaml
    assert list(tmp_path.iterdir()) == []


def test_names_and_files(tmp_path, monkeypatch):
    packaged = recipes.folder() / "qm9_demo.yaml"
    assert {recipes.find(name) for name in ("qm9_demo", "qm9_demo.yaml", "recipes/qm9_demo.yaml")} == {packaged}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "qm9_demo.yaml").write_text("trainer: {max_epochs: 1}\n")
    assert recipes.find("qm9_demo.yaml") == Path("qm9_demo.yaml")  # a file that exists wins
    with pytest.raises(recipes.RecipeNotFoundError, match="no packaged recipe 'qm9_dem'"):
        recipes.find("qm9_dem")
    assert main(["fit", "--config", "qm9_dem"]) == 1


def test_an_overlay_of_your_own_names_a_packaged_base(tmp_path):
    (tmp_path / "short.yaml").write_text("base: ethanol_forcefield\ntrainer: {max_epochs: 2}\n")
    config = parse_config(["fit", "--config", str(tmp_path / "short.yaml")])
    assert config["trainer"]["max_epochs"] == 2
    assert config["model"] == parse_config(["fit", "--config", "ethanol_forcefield"])["model"]


def test_each_base_is_applied_once_before_what_varies_it(tmp_path):
    (tmp_path / "a.yaml").write_text("trainer: {max_epochs: 1}\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\ntrainer: {max_steps: 5}\n")
    (tmp_path / "c.yaml").write_text("base: a.yaml\ntrainer: {max_time: '00:00:01:00'}\n")
    (tmp_path / "d.yaml").write_text("base: [b.yaml, c.yaml]\n")
    # a.yaml once, first: applied again after b.yaml it would undo what b.yaml changed of it
    assert [path.name for path in recipes.chain(tmp_path / "d.yaml")] == ["a.yaml", "b.yaml", "c.yaml", "d.yaml"]
    (tmp_path / "a.yaml").write_text("base: d.yaml\n")
    with pytest.raises(recipes.RecipeError, match="lead back"):
        recipes.chain(tmp_path / "d.yaml")


def test_config_options_are_expanded_in_every_spelling():
    chain = [str(path) for path in recipes.chain("ethanol_forcefield_dens")]
    assert [Path(path).name for path in chain] == ["ethanol_forcefield.yaml", "dens.yaml",
                                                   "ethanol_forcefield_dens.yaml"]
    assert recipes.expand_config_arguments(["fit", "-c", "ethanol_forcefield_dens", "--trainer.max_epochs", "1"]) == [
        "fit", *(argument for path in chain for argument in ("-c", path)), "--trainer.max_epochs", "1"]
    assert recipes.expand_config_arguments(["fit", "--config=ethanol_forcefield_dens"]) == [
        "fit", *(argument for path in chain for argument in ("--config", path))]
    # jsonargparse also takes the config itself as a string
    assert recipes.expand_config_arguments(["fit", "--config", "{trainer: {max_epochs: 1}}"]) == [
        "fit", "--config", "{trainer: {max_epochs: 1}}"]


def test_zoo_recipes_lists_every_recipe_with_its_bases_and_card(capsys):
    assert main(["recipes"]) == 0
    listing = capsys.readouterr().out
    for name in recipes.names():
        assert f"\n{name}" in listing
    assert "\nadd-ons: zoo fit --config RECIPE --config NAME\n\nanneal\n    Add-on: the learning rate" in listing
    assert "\ndens\n    Add-on: DeNS" in listing
    assert "ethanol_forcefield_dens  (on ethanol_forcefield + dens; card ethanol-dens-pbe-def2svp)" in listing
    assert "cluster/slurm.sbatch" in listing
    assert main(["recipes", "show", "dens"]) == 0
    assert "probability: 0.25" in capsys.readouterr().out


def test_a_copy_runs_as_it_is_and_on_its_own_files(tmp_path, capsys):
    assert main(["recipes", "copy", "malonaldehyde_forcefield_dens", str(tmp_path / "mine")]) == 0
    written = sorted(path.relative_to(tmp_path / "mine").as_posix() for path in (tmp_path / "mine").rglob("*.*"))
    assert written == ["cards/malonaldehyde-dens-pbe-def2svp.yaml", "dens.yaml", "ethanol_forcefield.yaml",
                       "malonaldehyde_forcefield.yaml", "malonaldehyde_forcefield_dens.yaml"]
    copy = tmp_path / "mine" / "malonaldehyde_forcefield_dens.yaml"
    assert f"run it: zoo fit --config {copy}" in capsys.readouterr().out
    assert parse_config(["fit", "--config", str(copy)]) == parse_config(["fit", "--config", copy.stem])
    base = tmp_path / "mine" / "ethanol_forcefield.yaml"
    base.write_text(base.read_text().replace("max_epochs: 12", "max_epochs: 3"))
    assert parse_config(["fit", "--config", str(copy)])["trainer"]["max_epochs"] == 3
    assert main(["recipes", "copy", "malonaldehyde_forcefield_dens", str(tmp_path / "mine")]) == 1
    assert "not overwritten" in capsys.readouterr().err
    assert main(["recipes", "copy", "cluster/torchrun.sh", str(tmp_path)]) == 0
    assert (tmp_path / "cluster" / "torchrun.sh").read_text().startswith("#!/usr/bin/env bash")


def test_a_wheel_ships_every_recipe_file():
    """pyproject.toml's package data covers every file of zoo/recipes, so that pip installs them."""
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["zoo"]
    shipped = {path for glob in globs for path in (ROOT / "zoo").glob(glob)}
    files = [path for path in recipes.folder().rglob("*")
             if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".py"]
    assert len(files) > 20 and [str(path) for path in files if path not in shipped] == []


def test_the_benchmark_recipes_parse_on_their_packaged_bases():
    config = parse_config(["fit", "--config", str(ROOT / "benchmarks/consistency/refiner.yaml")])
    model = config["model"]["init_args"]["model"]["init_args"]
    assert model["max_noise_time"] == 0.3 and model["one_shot_start"] == 0.1
    assert model["backbone"]["init_args"]["channels"] == 32
    assert len(config["data"]["init_args"]["source"]) == 3
    assert not any("ExportPretrained" in str(c) for c in config["trainer"]["callbacks"])  # no published card
    # the packaged refiner of QM9 geometries: refiner.yaml's model, many-body, learning QM9's geometries only
    config = parse_config(["fit", "--config", "consistency_refiner_qm9_geometries"])
    task = config["model"]["init_args"]
    assert {key: task["model"]["init_args"]["backbone"]["init_args"][key] for key in ("channels", "l_max")} == \
        {"channels": 32, "l_max": 2}
    assert task["model"]["init_args"]["max_noise_time"] == 0.3
    assert task["model"]["init_args"]["backbone"]["init_args"]["interaction"] == "many_body"
    assert task["equilibrium_kinds"] == ["qm9_reference"]
    assert [Path(s).name for s in config["data"]["init_args"]["source"]] == ["qm9_train.extxyz", "qm9_geometries.extxyz"]


def test_the_long_qm9_hamiltonian_anneal_continues_the_published_model_without_publishing():
    config = parse_config(["fit", "--config", str(ROOT / "benchmarks/hamiltonian/qm9_long_anneal.yaml")])
    task = config["model"]["init_args"]
    assert task["pretrained"] == "hamiltonian-qm9-b3lyp5-def2svp"
    assert task["optimizer"]["init_args"]["lr"] == 0.001
    assert task["lr_scheduler"]["class_path"] == "zoo.tasks.AnnealOverBudget"
    assert config["trainer"]["max_time"] == "00:04:00:00" and config["trainer"]["gradient_clip_val"] == 0.01
    assert [Path(s).name for s in config["data"]["init_args"]["source"]] == \
        ["small_b3lyp5_def2svp.h5", "small_extra_b3lyp5_def2svp.h5"]
    assert not any("ExportPretrained" in str(c) for c in config["trainer"]["callbacks"])


def test_the_dens_add_on_bounds_the_force_encoding():
    """On a recipe of one's own DeNS bounds the encoding; a published DeNS recipe keeps what trained it."""
    def bounded(*configs):
        config = parse_config(["fit", *(a for c in configs for a in ("--config", c))])
        return config["model"]["init_args"]["dens"]["init_args"]["bounded_encoding"]
    assert bounded("malonaldehyde_forcefield", "dens") is True
    assert bounded("malonaldehyde_forcefield_dens") is False


def test_the_multi_fidelity_stage_reads_only_committed_files():
    """Stage 2 of the organic force field (issue 22) runs on any clone: its sources are in the repository."""
    config = parse_config(["fit", "--config", "organic_multifidelity"])
    data = config["data"]["init_args"]
    assert config["model"]["init_args"]["pretrained"] == "organic-dens-gfn2-xtb"
    assert data["levels"] == ["pbe/def2-svp", "gfn2-xtb"]
    # a fresh force encoding beside a trained many-body backbone: bounded (docs/force_field.md)
    assert config["model"]["init_args"]["dens"]["init_args"]["bounded_encoding"] is True
    assert [(s["source"], s["level"]) for s in data["source"]] == [
        ("data/organic/qm9_md500_pbe_def2svp_504.extxyz", "pbe/def2-svp"),
        ("data/organic/qm9_md500_dft_frames.extxyz", "gfn2-xtb")]
    # the DFT source: the label shards' 504 frames (make data-organic-dft) merged, committed
    needed = [source["source"] for source in data["source"]] + [data["test_source"]]
    assert [path for path in needed if not (ROOT / path).is_file()] == []
