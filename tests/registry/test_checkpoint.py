import json
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file

import zoo
from zoo._files import OutputBusyError, exclusive_output
from zoo.qc import LevelOfTheory
from zoo.registry import (
    CheckpointFormatError,
    UnsupportedElementsError,
    instantiate_task,
    load_pretrained,
    read_config,
    save_pretrained,
    task_config,
)
from zoo.registry import _checkpoint
from zoo.registry._manifest import upgrade_level_of_theory


def test_round_trip_reproduces_the_task(registry, tiny):
    folder = registry.served / "tiny-ho"
    task = load_pretrained(folder)
    assert not task.training
    assert task.registry_info.source == "local folder" and task.registry_info.info.elements == ["H", "O"]
    batch = tiny.batch()
    with torch.no_grad():
        assert torch.allclose(task(batch)["energy"], registry.tasks["tiny-ho"](batch)["energy"])
    # the loaded task keeps its config, so it can be saved again unchanged
    assert task_config(task) == read_config(folder)[0]["task"]


def test_float64_models_load_in_float64(tmp_path, tiny):
    task = instantiate_task(tiny.config()).double()
    with torch.no_grad():
        for parameter in task.parameters():
            parameter.add_(1e-12)  # a change float32 cannot represent
    save_pretrained(task, tmp_path / "f64", tiny.info("f64"))
    loaded = load_pretrained(tmp_path / "f64")
    for (name, expected), actual in zip(task.state_dict().items(), loaded.state_dict().values()):
        assert actual.dtype == expected.dtype and torch.equal(actual, expected), name


def test_a_dtype_casts_the_loaded_task_both_ways(tmp_path, registry, tiny):
    """load_pretrained and load_run (zoo.load's dtype=) cast a float32 checkpoint to float64 and back."""
    import yaml

    from zoo.registry import load_run

    folder = registry.served / "tiny-ho"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": tiny.config()}))
    torch.save({"state_dict": load_pretrained(folder).state_dict()}, run / "checkpoints" / "last.ckpt")
    batch = tiny.batch()
    expected = registry.tasks["tiny-ho"](batch)["energy"].detach()
    for load in (lambda dtype: load_pretrained(folder, dtype=dtype), lambda dtype: load_run(run, dtype=dtype)):
        for dtype in (torch.float64, "float64", torch.float32):
            task = load(dtype)
            resolved = getattr(torch, dtype) if isinstance(dtype, str) else dtype
            assert {p.dtype for p in task.parameters()} == {resolved} and not task.training
            with torch.no_grad():
                energy = task(batch.clone().apply(lambda t: t.to(resolved) if t.is_floating_point() else t))["energy"]
            torch.testing.assert_close(energy.float(), expected, atol=1e-5, rtol=1e-6)
    with pytest.raises(ValueError, match="dtype must be a floating-point torch dtype"):
        load_pretrained(folder, dtype=torch.int64)


def test_folder_layout_and_metadata(registry):
    folder = registry.served / "tiny-ho"
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "zoo-checkpoint" and config["format_version"] == _checkpoint.FORMAT_VERSION
    assert config["zoo_version"] == zoo.__version__
    assert config["task"]["class_path"] == "zoo.tasks.AtomisticTask"
    assert config["elements"] == ["H", "O"] and config["architecture"] == "PropertyModel(EquivariantBackbone)"
    assert config["level_of_theory"]["xc"] == "b3lyp5" and config["units"]["energy"] == "eV"
    # weights: plain tensors, readable without unpickling anything
    assert set(load_file(folder / "model.safetensors")) == set(registry.tasks["tiny-ho"].state_dict())
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "mit" and {"zoo", "property"} <= set(card.data.tags)
    assert card.data.eval_results[0].metric_value == 0.25
    assert 'zoo.load("tiny-ho")' in card.text


def _with_config(tmp_path, registry, **changes):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "README.md"):
        (folder / name).write_bytes((registry.served / "tiny-ho" / name).read_bytes())
    config = json.loads((registry.served / "tiny-ho" / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    return folder


def test_newer_format_is_refused_with_the_zoo_version_that_reads_it(tmp_path, registry):
    folder = _with_config(tmp_path, registry, format_version=_checkpoint.FORMAT_VERSION + 1, zoo_version="9.1.0")
    with pytest.raises(CheckpointFormatError, match="written by zoo 9.1.0.*pip install -U 'zoo>=9.1.0'"):
        zoo.load(folder)


def test_every_older_format_has_an_upgrade():
    assert set(_checkpoint._UPGRADES) == set(range(1, _checkpoint.FORMAT_VERSION))


def test_older_formats_are_upgraded(tmp_path, registry, monkeypatch):
    def rename_units(config):  # a hypothetical format 2 that renamed a key
        units = dict(config["units"])
        units["length"] = units.pop("positions")
        return {**config, "units": units}

    monkeypatch.setattr(_checkpoint, "FORMAT_VERSION", _checkpoint.FORMAT_VERSION + 1)
    monkeypatch.setattr(_checkpoint, "_UPGRADES", {_checkpoint.FORMAT_VERSION - 1: rename_units})
    config, info = read_config(registry.served / "tiny-ho")
    assert config["format_version"] == _checkpoint.FORMAT_VERSION and info.units == {"energy": "eV", "length": "Å"}


def test_format_1_levels_of_theory_read_as_one_record():
    """Format 1 spelled the card's level {xc, basis, grid, code} and a HamiltonianModel's as flat arguments."""
    hamiltonian = {"class_path": "zoo.models.HamiltonianModel", "init_args": {
        "basis": "def2-svp", "xc": "b3lyp5", "grid_level": 3, "density_fitting": False, "method": "rks",
        "charge": 0, "head_channels": 16}}
    old = {"format": "zoo-checkpoint", "format_version": 1, "zoo_version": "0.1.0",
           "level_of_theory": {"xc": "b3lyp5", "basis": "def2-svp", "grid": 3, "code": "pyscf"},
           "task": {"class_path": "zoo.tasks.HamiltonianTask", "init_args": {"model": hamiltonian}}}
    config = _checkpoint.upgrade_config(old)
    assert config["format_version"] == _checkpoint.FORMAT_VERSION
    assert LevelOfTheory.from_dict(config["level_of_theory"]) == LevelOfTheory(xc="b3lyp5", basis="def2-svp")
    args = config["task"]["init_args"]["model"]["init_args"]
    assert set(args) == {"head_channels", "level"} and LevelOfTheory.from_dict(args["level"]) == LevelOfTheory()
    assert old["task"]["init_args"]["model"] is hamiltonian and "basis" in hamiltonian["init_args"]  # not changed
    # Hartree-Fock was xc "hf"; a code may carry its version; another code's grid is no PySCF grid
    hf = LevelOfTheory.from_dict(upgrade_level_of_theory({"xc": "HF", "basis": "sto-3g", "code": "pyscf 2.14"}))
    assert hf == LevelOfTheory(method="rhf", xc=None, basis="sto-3g")
    orca = LevelOfTheory.from_dict(upgrade_level_of_theory({"xc": "pbe", "basis": "def2-svp", "grid": "Grid5",
                                                            "code": "ORCA"}))
    assert (orca.grid_level, orca.code) == (None, "orca")


@pytest.mark.parametrize("changes, message", [
    ({"format": "transformers"}, "is not a zoo checkpoint"),
    ({"elements": ["H", "Qq"]}, "field 'elements': unknown element symbols"),
    ({"task": {"class_path": "zoo.tasks.NoSuchTask", "init_args": {}}}, "could not build zoo.tasks.NoSuchTask"),
])
def test_bad_configs(tmp_path, registry, changes, message):
    with pytest.raises(CheckpointFormatError, match=message):
        load_pretrained(_with_config(tmp_path, registry, **changes))


def test_not_a_model_folder(tmp_path):
    with pytest.raises(CheckpointFormatError, match="not a model folder"):
        zoo.load(tmp_path)


def test_unknown_elements_are_a_clear_error_on_every_path(registry, tiny):
    from ase.build import molecule

    task = load_pretrained(registry.served / "tiny-ho", name="tiny-ho")
    message = "trained on H, O and cannot predict for C.*--model.pretrained tiny-ho"
    methane = molecule("CH4")
    methane.calc = task.as_calculator()
    for run in (lambda: task(tiny.batch(numbers=(6, 1, 1, 1, 1))), lambda: task.model(tiny.batch(numbers=(6, 1))),
                lambda: task.predict(methane), methane.get_potential_energy):
        with pytest.raises(UnsupportedElementsError, match=message):
            run()


def test_tasks_built_in_python_need_their_config(tmp_path, registry, tiny):
    from zoo.models import EquivariantBackbone, PropertyModel
    from zoo.tasks import AtomisticTask, Output

    task = AtomisticTask(PropertyModel(EquivariantBackbone(["H"], channels=2, l_max=0, num_layers=1), ["energy"]),
                         [Output("energy")])
    with pytest.raises(CheckpointFormatError, match="pass config="):
        save_pretrained(task, tmp_path / "m", tiny.info("m"))


def test_fine_tunes_record_their_parent_instead_of_reloading_it(tmp_path, registry, tiny):
    config = task_config(registry.tasks["tiny-ho"])
    config["init_args"]["pretrained"] = "tiny-ho"
    save_pretrained(registry.tasks["tiny-ho"], tmp_path / "child", tiny.info("child"), config=config)
    saved, _ = read_config(tmp_path / "child")
    assert saved["finetuned_from"] == "tiny-ho" and saved["task"]["init_args"]["pretrained"] is None
    assert load_pretrained(tmp_path / "child").registry_info.name == "child"


def test_instantiate_task_keeps_the_full_config(tiny):
    task = instantiate_task(tiny.config())
    config = task_config(task)
    assert config["init_args"]["monitor"] == "val/loss"  # defaults are recorded too
    assert task_config(instantiate_task(config)) == config


def test_a_second_writer_of_a_model_folder_is_refused(tmp_path, registry, tiny):
    folder = tmp_path / "model"
    with exclusive_output(folder):
        with pytest.raises(OutputBusyError, match="being written by another run"):
            save_pretrained(registry.tasks["tiny-ho"], folder, tiny.info("m"))
    assert not folder.exists()
    save_pretrained(registry.tasks["tiny-ho"], folder, tiny.info("m"))
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_a_write_that_fails_leaves_the_previous_files(tmp_path, registry, tiny, monkeypatch):
    folder = save_pretrained(registry.tasks["tiny-ho"], tmp_path / "model", tiny.info("m"))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def disk_full(state, path, metadata):
        Path(path).write_bytes(b"half a file")
        raise OSError("No space left on device")

    monkeypatch.setattr(_checkpoint, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_pretrained(registry.tasks["tiny-ho"], folder, tiny.info("m"))
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no half file, no temporary left
