import logging
import shutil
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.multiprocessing import ProcessExitedException
from torch_geometric.loader import DataLoader

from zoo.callbacks import FreezeBackbone
from zoo.data import AtomicData
from zoo.registry import CheckpointFormatError, instantiate_task, load_pretrained_weights
from zoo.tasks import AtomisticTask


class PretrainedTask(AtomisticTask):
    """AtomisticTask with the ``pretrained`` argument that the base task is to get (docs/registry.md)."""

    def __init__(self, *args, pretrained: str | None = None, manifest: str | None = None, log_dir: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.pretrained, self.manifest, self.log_dir = pretrained, manifest, log_dir

    def setup(self, stage: str) -> None:
        # after the process group is up: one download per node, the other ranks read the cache
        if self.pretrained and stage == "fit" and self.trainer.ckpt_path is None:
            report = load_pretrained_weights(self, self.pretrained, manifest=self.manifest)
            with open(f"{self.log_dir}/rank{self.global_rank}.txt", "w") as f:
                f.write(report.source)


def _data(n=8):
    generator = torch.Generator().manual_seed(1)
    return [AtomicData.from_arrays([8, 1, 1], torch.randn(3, 3, generator=generator), energy=float(i % 3))
            for i in range(n)]


def _backbone(task):
    return {k: v.clone() for k, v in task.model.backbone.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_a_target_the_checkpoint_has_keeps_its_rows_and_a_new_one_starts_fresh(registry, tiny):
    task = instantiate_task(tiny.config(targets=("energy", "gap")))
    initial = task.model.readout[2].weight.detach().clone()
    report = load_pretrained_weights(task, registry.served / "tiny-ho")
    assert report.source == "local folder"
    assert _same(_backbone(task), _backbone(registry.tasks["tiny-ho"]))
    assert report.heads == {"energy": "energy", "gap": None}
    tuned, published = task.model.state_dict(), registry.tasks["tiny-ho"].model.state_dict()
    for name in ("readout.2.weight", "readout.2.bias", "rescale.shift", "rescale.scale", "reference_energies.atomref"):
        assert f"model.{name}" in report.loaded and torch.equal(tuned[name][0], published[name][0]), name
    assert torch.equal(task.model.readout[2].weight[1], initial[1])  # the gap's row: its initialisation
    assert not report.mismatched and not report.missing and not report.unexpected
    with pytest.raises(CheckpointFormatError, match="cannot load 'tiny-ho' strictly.*other heads \\(gap at its initialisation"):
        load_pretrained_weights(task, registry.served / "tiny-ho", strict=True)


def _force_field(tiny, levels):
    """A tiny ForceFieldTask(ForceFieldModel) with an energy head per level of theory."""
    config = tiny.config()
    model = config["init_args"]["model"]
    model["class_path"] = "zoo.models.ForceFieldModel"
    model["init_args"] = {"backbone": model["init_args"]["backbone"], "hidden": 8, "levels": levels}
    torch.manual_seed(len(levels or ()))
    return instantiate_task({"class_path": "zoo.tasks.ForceFieldTask", "init_args": {"model": model}})


@pytest.mark.parametrize("levels", [["pbe/def2-svp", "gfn2-xtb"], ["gfn2-xtb", "pbe/def2-svp"]])
def test_a_new_level_of_theory_starts_from_the_pretrained_primary_head_and_a_known_one_keeps_its_own(
        levels, tiny, tmp_path):
    from zoo.registry import save_pretrained

    info = {**tiny.info("tiny-xtb"), "family": "force-field",
            "units": {"positions": "Å", "energy": "eV", "forces": "eV/Å"}}
    save_pretrained(_force_field(tiny, ["gfn2-xtb"]), tmp_path / "xtb", info)  # stage 1: one level
    xtb = _force_field(tiny, ["gfn2-xtb"])
    load_pretrained_weights(xtb, tmp_path / "xtb", strict=True)
    xtb_row = xtb.model.readout[2].weight[0].detach().clone()

    both = _force_field(tiny, levels)  # stage 2: a second level joins
    report = load_pretrained_weights(both, tmp_path / "xtb", required=["model.backbone.*"])
    assert report.heads == {f"energy[{level}]": "energy[gfn2-xtb]" for level in levels}
    assert all(torch.equal(row, xtb_row) for row in both.model.readout[2].weight)
    assert "model.readout.2.weight" in report.loaded and not report.mismatched

    with torch.no_grad():  # as if stage 2 had trained the levels apart
        both.model.readout[2].weight[levels.index("pbe/def2-svp")] += 1.0
    save_pretrained(both, tmp_path / "both", {**info, "name": "tiny-both"})
    mine = _force_field(tiny, None)  # a user's fine-tune at PBE/def2-SVP: one unnamed level
    report = load_pretrained_weights(mine, tmp_path / "both")
    assert report.heads == {"energy": f"energy[{levels[0]}]"}  # the pretrained model's primary level
    assert torch.equal(mine.model.readout[2].weight[0], both.model.readout[2].weight[0])
    again = _force_field(tiny, ["pbe/def2-svp"])  # the user names the level: that head, wherever it is
    report = load_pretrained_weights(again, tmp_path / "both")
    assert report.heads == {"energy[pbe/def2-svp]": "energy[pbe/def2-svp]"}
    assert torch.equal(again.model.readout[2].weight[0], both.model.readout[2].weight[levels.index("pbe/def2-svp")])


def test_a_required_backbone_loads_whole_or_not_at_all(registry, tiny):
    task = instantiate_task(tiny.config(targets=("energy", "gap")))
    report = load_pretrained_weights(task, registry.served / "tiny-ho", required=["model.backbone.*"])
    backbone = sorted(f"model.backbone.{k}" for k in task.model.backbone.state_dict())
    assert set(backbone) <= set(report.loaded) and report.heads == {"energy": "energy", "gap": None}
    wider = instantiate_task(tiny.config(elements=("H", "C", "O")))
    before = {k: v.clone() for k, v in wider.state_dict().items()}
    with pytest.raises(CheckpointFormatError, match=r"model.backbone.embedding.weight.*adds elements \['C'\]"):
        load_pretrained_weights(wider, registry.served / "tiny-ho", required=["model.backbone.*"])
    assert _same(wider.state_dict(), before)  # nothing half-loaded


def test_exclude_and_strict(registry, tiny):
    task = instantiate_task(tiny.config())
    before = task.model.rescale.shift.clone()
    report = load_pretrained_weights(task, registry.served / "tiny-ho", exclude=["model.rescale.*", "model.readout.*"])
    assert report.excluded == sorted(["model.rescale.shift", "model.rescale.scale", "model.readout.0.weight",
                                      "model.readout.0.bias", "model.readout.2.weight", "model.readout.2.bias"])
    assert torch.equal(task.model.rescale.shift, before)
    report = load_pretrained_weights(task, registry.served / "tiny-ho", strict=True)
    assert _same(task.state_dict(), registry.tasks["tiny-ho"].state_dict())


def test_new_elements_are_reported(registry, tiny, caplog):
    task = instantiate_task(tiny.config(elements=("H", "C", "O")))
    with caplog.at_level(logging.WARNING, logger="zoo.registry"):
        report = load_pretrained_weights(task, registry.served / "tiny-ho")
    assert "adds elements ['C'] that 'tiny-ho' was not trained on" in caplog.text
    assert any(m.startswith("model.backbone.embedding.weight") for m in report.mismatched)
    with pytest.raises(CheckpointFormatError, match="adds elements \\['C'\\]"):
        load_pretrained_weights(task, registry.served / "tiny-ho", strict=True)


class _Snapshots(pl.Callback):
    def __init__(self):
        self.backbones = []

    def on_train_epoch_end(self, trainer, pl_module):
        self.backbones.append(_backbone(pl_module))


def test_freeze_backbone_then_unfreeze(registry, tiny, tmp_path):
    task = instantiate_task(tiny.config())
    load_pretrained_weights(task, registry.served / "tiny-ho")
    start, readout = _backbone(task), task.model.readout[0].weight.clone()
    snapshots = _Snapshots()
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", callbacks=[FreezeBackbone(unfreeze_at_epoch=1), snapshots],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(task, DataLoader(_data(), batch_size=4))
    assert _same(snapshots.backbones[0], start)  # frozen in epoch 0 ...
    assert not torch.equal(task.model.readout[0].weight, readout)  # ... while the head trains
    assert not _same(snapshots.backbones[1], start)  # and trains from epoch 1
    assert all(p.requires_grad for p in task.parameters())


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="the local Hub needs git")
def test_ddp_fine_tune_from_a_registry_name(registry, local_hub, hub_env, tiny, tmp_path, monkeypatch):
    """Two CPU processes (gloo): rank 0 downloads, rank 1 reads the cache; the frozen backbone stays
    identical on both replicas although it keeps requires_grad under DDP."""
    # the spawned processes unpickle PretrainedTask from this module: they need the repository on sys.path
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))

    def fine_tune(folder):
        config = tiny.config()
        config["class_path"] = f"{__name__}.PretrainedTask"
        config["init_args"].update(pretrained="tiny-remote", manifest=str(registry.root / "checkpoints.json"),
                                   log_dir=str(folder))
        task = instantiate_task(config, trusted_modules=(__name__,))
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp_spawn",
                             callbacks=[FreezeBackbone(unfreeze_at_epoch=1)], logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             default_root_dir=folder)
        trainer.fit(task, DataLoader(_data(), batch_size=2))
        return task

    try:
        task, folder = fine_tune(tmp_path), tmp_path
    except ProcessExitedException as error:
        # gloo can abort a spawned process while the group tears down ("connection reset by peer";
        # Lightning marks its own ddp_spawn tests flaky for it): once more, from an empty Hub cache
        if error.signal_name != "SIGABRT":
            raise
        folder = tmp_path / "retry"
        folder.mkdir()
        monkeypatch.setenv("HF_HUB_CACHE", str(folder / "hf-cache"))
        task = fine_tune(folder)
    sources = [(folder / f"rank{r}.txt").read_text() for r in range(2)]
    assert sources == [f"{local_hub.endpoint} (downloaded)", "the Hugging Face cache"]
    assert _same(_backbone(task), _backbone(registry.tasks["tiny-remote"]))
    assert not torch.equal(task.model.readout[0].weight, registry.tasks["tiny-remote"].model.readout[0].weight)


@pytest.mark.parametrize("keep", [False, True])
def test_fine_tune_keeps_or_refits_the_pretrained_statistics(registry, tiny, tmp_path, keep):
    import ase.io
    from ase.build import molecule
    from ase.calculators.singlepoint import SinglePointCalculator

    from zoo.data import AtomicDataModule

    images = []
    for i in range(6):
        atoms = molecule("H2O")
        atoms.rattle(0.05, seed=i)
        atoms.calc = SinglePointCalculator(atoms, energy=100.0 + i)  # far from the pretrained statistics
        images.append(atoms)
    ase.io.write(tmp_path / "water.extxyz", images)
    data = AtomicDataModule(str(tmp_path / "water.extxyz"), cutoff=3.0, targets=["energy"], standardize=["energy"],
                            split={"method": "random", "sizes": [4, 2, 0]}, batch_size=2, split_dir=str(tmp_path))
    config = tiny.config()
    config["init_args"].update(pretrained=str(registry.served / "tiny-ho"), keep_pretrained_statistics=keep)
    task = instantiate_task(config)
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(task, datamodule=data)
    pretrained = registry.tasks["tiny-ho"].model
    if keep:
        assert torch.equal(task.model.rescale.shift, pretrained.rescale.shift)
        assert torch.equal(task.model.rescale.scale, pretrained.rescale.scale)
    else:
        assert torch.allclose(task.model.rescale.shift, torch.tensor([data.statistics.mean("energy")]))


def test_a_checkpoint_from_before_the_training_domain_loads_strictly(registry, tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    old = tmp_path / "tiny-ho"
    shutil.copytree(registry.served / "tiny-ho", old)
    weights = load_file(old / "model.safetensors")
    save_file({k: v for k, v in weights.items() if ".domain." not in k}, old / "model.safetensors")
    task = instantiate_task(tiny.config())
    report = load_pretrained_weights(task, old, strict=True)  # the module's upgrade hook fills the domain
    assert not report.missing and not report.unexpected


def test_a_checkpoint_with_the_statistics_of_zoo_0_1_0_loads_and_fine_tunes(registry, tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    from zoo.registry import load_pretrained

    old = tmp_path / "tiny-ho"
    shutil.copytree(registry.served / "tiny-ho", old)
    weights = load_file(old / "model.safetensors")
    renamed = {"model.rescale.shift": "model.shift", "model.rescale.scale": "model.scale",
               "model.reference_energies.atomref": "model.atomref"}
    save_file({renamed.get(k, k): v for k, v in weights.items()}, old / "model.safetensors")
    published = registry.tasks["tiny-ho"].model
    loaded = load_pretrained(old).model  # strict: every tensor finds its new name
    assert torch.equal(loaded.rescale.scale, published.rescale.scale)
    assert torch.equal(loaded.reference_energies.atomref, published.reference_energies.atomref)
    # a fine-tune to more targets: the statistics of the old layout, under their new names, row by row
    task = instantiate_task(tiny.config(targets=("energy", "gap")))
    report = load_pretrained_weights(task, old)
    assert {"model.rescale.shift", "model.reference_energies.atomref"} <= set(report.loaded)
    assert torch.equal(task.model.rescale.scale[0], published.rescale.scale[0]) and report.heads["gap"] is None
    assert "model.readout.0.weight" in report.loaded and not report.unexpected and not report.mismatched


def test_fine_tuning_data_in_other_units_or_at_another_level_is_refused(tmp_path):
    import ase.io

    import zoo
    from zoo.data import AtomicDataModule
    from zoo.tasks._fine_tuning import check_fine_tuning_data

    task = zoo.load("ethanol-dens-pbe-def2svp")  # its weights and statistics, as a fine-tune starts
    frames = ase.io.read(Path(__file__).resolve().parents[2] / "data/ethanol/ethanol_pbe_def2svp_test.extxyz", ":12")

    def statistics_of(scale_forces=1.0, shift_energy=0.0):
        for atoms in frames:
            atoms.calc.results["forces"] = atoms.calc.results["forces"] * scale_forces
            atoms.calc.results["energy"] = atoms.calc.results["energy"] + shift_energy
        path = tmp_path / f"{scale_forces}_{shift_energy}.extxyz"
        ase.io.write(path, frames)
        module = AtomicDataModule(str(path), targets=["energy", "forces"], standardize=["energy", "forces"],
                                  reference_energies=["energy"], split={"method": "random", "sizes": [10, 2, 0]})
        module.setup("fit")
        for atoms in frames:  # undo
            atoms.calc.results["forces"] = atoms.calc.results["forces"] / scale_forces
            atoms.calc.results["energy"] = atoms.calc.results["energy"] - shift_energy
        return module.statistics, module.train_dataset

    same = statistics_of()
    check_fine_tuning_data(task.model, *same, keep_statistics=True, name="ethanol")  # its own level: accepted
    hartree_bohr = statistics_of(scale_forces=1 / 51.42)
    with pytest.raises(ValueError, match=r"are they in eV/Å\? .*convert Hartree/Bohr"):
        check_fine_tuning_data(task.model, *hartree_bohr, keep_statistics=False, name="ethanol")
    other_level = statistics_of(shift_energy=-9 * 2.0)  # 2 eV per atom lower
    check_fine_tuning_data(task.model, *other_level, keep_statistics=False, name="ethanol")  # re-fitted: fine
    with pytest.raises(ValueError, match=r"-2 eV per atom .* not its level of theory.*set it false"):
        check_fine_tuning_data(task.model, *other_level, keep_statistics=True, name="ethanol")
