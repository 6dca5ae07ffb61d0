import copy

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch_geometric.data import Batch

from zoo import cli
from zoo.data import AtomicDataModule, keys, kind_mask, read_ase
from zoo.data.readers.ase_io import write_extxyz
from zoo.data.transforms import ATOM_FEATURE_NAMES
from zoo.models import ConsistencyModel, EquivariantBackbone
from zoo.tasks import ConsistencyTask
from zoo.testing import toy_consistency_frames

SMILES = ["CCO", "CC(=O)O", "OC=O", "CC#N"]
READER = {"info_keys": {"qm9_id": "qm9_id", "structure_kind": "structure_kind"}, "results": ["energy", "forces"],
          "mask_missing": True, "molecular_graph": True}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Training frames (xTB-like minima without labels, labelled perturbed copies) and test references."""
    folder = tmp_path_factory.mktemp("consistency")
    frames = toy_consistency_frames(SMILES, perturbed=2)
    train = [f for f in frames if f.info["structure_kind"] != "qm9_reference"]
    test = [f for f in frames if f.info["structure_kind"] == "qm9_reference"]
    return write_extxyz(folder / "train.extxyz", train), write_extxyz(folder / "test.extxyz", test)


def _task(**kwargs) -> ConsistencyTask:
    torch.manual_seed(0)
    backbone = EquivariantBackbone(
        ["H", "C", "N", "O"], channels=8, l_max=1, num_layers=2, cutoff=8.0, num_radial=8, radial_hidden=16,
        avg_num_neighbors=8.0, extra_node_irreps=f"{len(ATOM_FEATURE_NAMES) + 8}x0e", edge_scalar_dim=9)
    model = ConsistencyModel(backbone, hidden=16, head_hidden=8, timesteps=50, time_features=8)
    return ConsistencyTask(model, **kwargs)


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, **kwargs)


def test_labels_count_only_where_they_exist(files):
    dataset = read_ase(files[0], **READER, dtype=torch.float64)
    batch = Batch.from_data_list(list(dataset))
    assert batch.has_energy.sum() == 2 * len(SMILES) and not batch.has_energy.all()
    task = _task().double()
    predictions = task.model(batch)
    total = task.compute_loss(batch, predictions, "train")
    labelled = batch.has_energy
    atoms = labelled[batch.batch]
    energy = torch.nn.functional.mse_loss(predictions[keys.ENERGY][labelled], batch.energy[labelled])
    forces = torch.nn.functional.mse_loss(predictions[keys.FORCES][atoms], batch.forces[atoms])
    assert torch.allclose(total, energy + 10 * forces)
    assert kind_mask(batch, ["xtb_optimized"]).tolist() == [k == "xtb_optimized" for k in batch.structure_kind]


def test_two_stages_switch_the_consistency_losses_on(files, tmp_path):
    data = AtomicDataModule(str(files[0]), reader_kwargs=READER, split={"method": "random", "sizes": [10, 2], "seed": 0},
                            batch_size=5, standardize=["energy", "forces"], reference_energies=["energy"])
    task = _task(consistency_start_epoch=1, val_structures=2, reference_kinds=["xtb_optimized", "perturbed"])
    logged = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            logged.append((trainer.current_epoch, set(trainer.callback_metrics)))

    trainer = _trainer(tmp_path, max_epochs=2, log_every_n_steps=1, callbacks=[Record()])
    trainer.fit(task, data)
    first = set.union(*[names for epoch, names in logged if epoch == 0])
    second = logged[-1][1]
    stage_two = {"train/optimality_loss", "train/score_loss", "train/forces_loss", "train/energy_gap"}
    assert not stage_two & {name for name in first if name.startswith("train/")}
    assert stage_two <= second
    assert {"val/rmsd", "val/energy_gap", "val/energy_mae", "val/forces_mae"} <= set(trainer.callback_metrics)
    # the loss scales are the training set's standard deviations
    assert task.outputs[0].scale == pytest.approx(data.statistics["energy"]["std"])
    assert task.outputs[1].scale == pytest.approx(data.statistics["forces"]["std"])


def test_a_short_fit_lowers_the_denoising_loss(files, tmp_path):
    data = AtomicDataModule(str(files[0]), reader_kwargs=READER, split={"method": "random", "sizes": [12, 0], "seed": 0},
                            batch_size=12)
    data.setup("fit")
    minima = Batch.from_data_list([d for d in data.train_dataset if d.structure_kind == "xtb_optimized"])
    task = _task(consistency_start_epoch=1000, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2))

    def loss():  # fixed noise and times: the same measurement before and after
        t = torch.arange(len(SMILES)) * 10 + 5
        with torch.no_grad():
            return sum(task.model.denoising_loss(minima, t, torch.Generator().manual_seed(seed)).item()
                       for seed in range(3)) / 3

    before = loss()
    _trainer(tmp_path, max_steps=60, limit_val_batches=0).fit(task, data)
    assert loss() < 0.85 * before


def test_the_recipe_runs_a_few_steps_and_tests(files, tmp_path):
    config = cli.parse_config(["fit", "--config", "consistency_qm9"])
    init = config["model"]["init_args"]
    init["model"]["init_args"]["backbone"]["init_args"].update(channels=4, num_layers=1, radial_hidden=8)
    init.update(consistency_start_epoch=1, val_structures=2, reference_kinds=["xtb_optimized", "perturbed",
                                                                            "qm9_reference"])
    config["trainer"].update(max_epochs=2, limit_train_batches=1, default_root_dir=str(tmp_path), log_every_n_steps=1)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path)
    config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if "EMA" not in c["class_path"]]
    export = next(c for c in config["trainer"]["callbacks"] if c["class_path"].endswith("ExportPretrained"))
    export["init_args"]["folder"] = str(tmp_path / "pretrained")
    config["data"]["init_args"].update(source=str(files[0]), test_source=str(files[1]), batch_size=8,
                                       split={**config["data"]["init_args"]["split"], "fractions": [0.75, 0.25]})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(config))
    fit = cli.lightning_main(["fit", "--config", str(tmp_path / "recipe.yaml")])
    assert "train/optimality_loss" in fit.trainer.callback_metrics
    assert fit.datamodule.split.method == "group" and fit.datamodule.split.params["key"] == "qm9_id"
    results = fit.trainer.test(fit.model, datamodule=fit.datamodule, verbose=False)[0]
    assert results["test/rmsd"] > 0 and "test/energy_gap" in results
    # the recipe's card is complete: the exported folder loads, with the test metrics in its card
    from zoo.registry import load_pretrained

    loaded = load_pretrained(tmp_path / "pretrained")
    info = loaded.registry_info.info
    assert info.family == "consistency"
    assert info.metrics["values"]["rmsd"] == pytest.approx(results["test/rmsd"], rel=1e-5)


def test_a_published_checkpoint_generates_the_same_structures(tmp_path):
    from zoo.registry import load_pretrained, save_pretrained

    config = cli.parse_config(["fit", "--config", "consistency_qm9"])["model"]
    config["init_args"]["model"]["init_args"]["backbone"]["init_args"].update(channels=4, num_layers=1, radial_hidden=8)
    from zoo.registry import instantiate_task

    task = instantiate_task(config)
    card = {"name": "consistency-test", "family": "consistency", "license": "mit", "units": {"positions": "Å",
            "energy": "eV"}, "data_source": "MMFF94 stand-in data"}
    loaded = load_pretrained(save_pretrained(task, tmp_path / "model", card))
    before = task.model.generate("CC=O", k=2, mode="ddim", steps=3, seed=1)
    after = loaded.model.generate("CC=O", k=2, mode="ddim", steps=3, seed=1)
    assert all((a.positions == b.positions).all() for a, b in zip(before, after))
    # an untrained generator's structures may clash, which energy() refuses: score a conformer
    from rdkit.Chem import AllChem

    from zoo.data.molgraph import mol_from_smiles

    conformer = after[0].copy()
    mol = mol_from_smiles(conformer.info["smiles"])
    assert AllChem.EmbedMolecule(mol, randomSeed=7) == 0
    conformer.positions = mol.GetConformer().GetPositions()
    assert loaded.model.energy(conformer) == pytest.approx(task.model.energy(conformer))


def test_bad_settings_are_clear_errors():
    from zoo.data import AtomicData

    task = _task()
    with pytest.raises(ValueError, match="predicts 'energy' and 'forces'"):
        ConsistencyTask(task.model, outputs=[{"name": "dipole"}])
    with pytest.raises(ValueError, match="kT"):
        ConsistencyTask(task.model, kT=0.0)
    with pytest.raises(ValueError, match="fractions of T"):
        ConsistencyTask(task.model, score_max_time=2.0)
    refiner = copy.deepcopy(task.model)
    refiner.max_noise_time = 0.2
    with pytest.raises(ValueError, match="optimality_max_time=0.3 asks the generator for noise times it does not learn"):
        ConsistencyTask(refiner, optimality_max_time=0.3)
    ConsistencyTask(refiner, optimality_max_time=0.3, optimality_weight=0.0)
    water = AtomicData.from_arrays([8, 1, 1], [[0, 0, 0], [0, 0, 1], [0, 1, 0]], energy=1.0)
    with pytest.raises(ValueError, match="no molecular graph"):
        task.step_loss(Batch.from_data_list([water]), "train")
