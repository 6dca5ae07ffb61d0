"""A model folder runs no code zoo does not already trust: its config is checked before anything is imported."""

import json
import sys

import pytest
import torch

import zoo
from zoo.registry import (
    CheckpointFormatError,
    UntrustedCodeError,
    check_trusted,
    instantiate_task,
    load_manifest,
    load_pretrained,
    load_pretrained_weights,
    read_config,
)


def _folder(tmp_path, registry, task):
    """A copy of the tiny-ho folder whose config.json holds ``task``."""
    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("model.safetensors", "README.md"):
        (folder / name).write_bytes((registry.served / "tiny-ho" / name).read_bytes())
    config = json.loads((registry.served / "tiny-ho" / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "task": task}))
    return folder


def test_a_folder_naming_its_own_module_is_refused_before_it_is_imported(tmp_path, registry, evil):
    folder = _folder(tmp_path, registry, {"class_path": "evilmodel.Task", "init_args": {}})
    with pytest.raises(UntrustedCodeError, match=r"config.json: task.class_path names 'evilmodel.Task', which zoo will "
                                                  r"not import.*trust_remote_code=True"):
        zoo.load(folder)
    assert not evil.exists() and "evilmodel" not in sys.modules


def test_this_is_not_imported(tmp_path, registry, capsys):
    folder = _folder(tmp_path, registry, {"class_path": "this.Foo", "init_args": {}})
    with pytest.raises(UntrustedCodeError, match="'this.Foo'"):
        zoo.load(folder)
    assert "Zen of Python" not in capsys.readouterr().out


def _set(config, path, value):
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return config


# (where in the tiny config, the value, what the refusal says): every way jsonargparse could import it
HOSTILE = {
    "class path in init_args": (["init_args", "model", "init_args", "backbone", "class_path"], "evilmodel.Task",
                                "backbone.class_path names 'evilmodel.Task'"),
    "class path in a list": (["init_args", "outputs"], [{"name": "energy"}, {"class_path": "evilmodel.Task"}],
                             r"outputs\[1\].class_path"),
    "string for a callable": (["init_args", "optimizer"], "evilmodel.make", "optimizer names 'evilmodel.make'"),
    "string for a module": (["init_args", "model"], "evilmodel.Task", "model names 'evilmodel.Task'"),
    "YAML in a string": (["init_args", "model"], "{class_path: evilmodel.Task}",
                         r"model \(YAML in a string\).class_path"),
    "dotted key": (["init_args", "model.class_path"], "evilmodel.Task", "model.class_path names"),
    "optimizer reaching torch.load": (["init_args", "optimizer"],
                                      {"class_path": "torch.optim.optimizer.torch.load", "init_args": {"f": "x"}},
                                      "it is a function, not a class"),
    "zoo module reaching another class": (["init_args", "model", "class_path"], "zoo.models.property.torch.nn.Tanh",
                                          "resolves to torch.nn.modules.activation.Tanh, defined outside zoo"),
    "torch.optim class that is no optimizer": (["init_args", "optimizer", "class_path"],
                                               "torch.optim.swa_utils.AveragedModel", "only torch.optim optimizers"),
    "not a dotted name": (["init_args", "model", "class_path"], "PropertyModel",
                          "a class path is a dotted Python name"),
    "bare name jsonargparse resolves": (["init_args", "model"], "Tanh", "'torch.nn.Tanh'"),
}


@pytest.mark.parametrize("path, value, message", HOSTILE.values(), ids=HOSTILE)
def test_every_way_a_config_names_code_is_checked(tiny, evil, path, value, message):
    with pytest.raises(UntrustedCodeError, match=message):
        instantiate_task(_set(tiny.config(), path, value))
    assert not evil.exists()


def test_a_string_naming_a_file_is_not_read_as_a_config(tiny, tmp_path, evil):
    nested = tmp_path / "model.yaml"
    nested.write_text("class_path: evilmodel.Task\n")
    with pytest.raises(UntrustedCodeError, match="model names .*model.yaml.*names a file"):
        instantiate_task(_set(tiny.config(), ["init_args", "model"], str(nested)))
    assert not evil.exists()


def test_string_arguments_are_taken_as_they_are(tiny, tmp_path):
    """jsonargparse imports or reads no value of a ``str`` argument: a path or a dotted name is fine there."""
    (tmp_path / "parent.v2").mkdir()
    (tmp_path / "notes.txt").write_text("a file")
    for pretrained in (str(tmp_path / "notes.txt"), "parent.v2"):
        task = instantiate_task(_set(tiny.config(), ["init_args", "pretrained"], pretrained))
        assert task.pretrained == pretrained


def test_a_checkpoint_cannot_name_another_model_to_fetch(tmp_path, registry, tiny):
    """A task's ``pretrained`` is fetched when it is fitted: a checkpoint names its parent as finetuned_from."""
    folder = _folder(tmp_path, registry, _set(tiny.config(), ["init_args", "pretrained"], "/home/someone/model"))
    with pytest.raises(CheckpointFormatError, match="task.init_args.pretrained is set.*finetuned_from"):
        zoo.load(folder)


def test_published_models_need_no_trust():
    manifest = load_manifest()
    for entry in manifest.models:
        config, _ = read_config(manifest.hub_dir / entry.name)
        check_trusted(config["task"], entry.name)


def test_a_zoo_model_loads(registry, tiny):
    task = load_pretrained(registry.served / "tiny-ho")
    with torch.no_grad():
        assert torch.equal(task(tiny.batch())["energy"], registry.tasks["tiny-ho"](tiny.batch())["energy"])


MY_TASK = """
from zoo.tasks import AtomisticTask

class MyTask(AtomisticTask):
    pass
"""


def test_code_outside_zoo_loads_with_the_opt_in(tmp_path, registry, tiny, monkeypatch):
    (tmp_path / "site" / "mylab").mkdir(parents=True)
    (tmp_path / "site" / "mylab" / "__init__.py").write_text(MY_TASK)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "mylab", raising=False)
    folder = _folder(tmp_path, registry, {**tiny.config(), "class_path": "mylab.MyTask"})
    with pytest.raises(UntrustedCodeError, match="'mylab.MyTask'"):
        zoo.load(folder)
    assert "mylab" not in sys.modules
    assert type(zoo.load(folder, trust_remote_code=True)).__name__ == "MyTask"
    assert type(zoo.load(folder, trusted_modules=("mylab",))).__name__ == "MyTask"
    with pytest.raises(ValueError, match="trusted_modules must be dotted module names"):
        zoo.load(folder, trusted_modules=("my lab",))


def test_fine_tuning_reads_only_the_weights(tmp_path, registry, tiny, evil):
    folder = _folder(tmp_path, registry, {"class_path": "evilmodel.Task", "init_args": {}})
    report = load_pretrained_weights(instantiate_task(tiny.config()), folder, strict=True)
    assert report.loaded and not evil.exists()
