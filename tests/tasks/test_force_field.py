import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.build import molecule
from torch_geometric.data import Batch

from zoo import cli
from zoo.data import AtomicData, keys
from zoo.dens import Corruption, DeNS
from zoo.models import EquivariantBackbone, ForceFieldModel
from zoo.tasks import ForceFieldTask, Output

ROOT = Path(__file__).resolve().parents[2]
ETHANOL = ROOT / "data" / "ethanol" / "ethanol_pbe_def2svp_train.extxyz"
N_FRAMES = 12


def _ethanol_frames(path: Path) -> Path:
    """The first frames of the ethanol PBE data (complete ones only: the file may be growing), or
    GFN2-xTB-labelled rattled ethanols if it is too short."""
    lines = ETHANOL.read_text().splitlines() if ETHANOL.is_file() else []
    if len(lines) >= N_FRAMES * 11:
        path.write_text("\n".join(lines[: N_FRAMES * 11]) + "\n")
        return path
    import ase.io
    from tblite.ase import TBLite

    rng = np.random.default_rng(0)
    images = []
    for _ in range(N_FRAMES):
        atoms = molecule("CH3CH2OH")
        atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
        atoms.calc = TBLite(method="GFN2-xTB", verbosity=0)
        atoms.get_forces()
        images.append(atoms)
    ase.io.write(path, images, format="extxyz")
    return path


@pytest.mark.parametrize("recipe,interaction", [("ethanol_forcefield", "two_body"),
                                                 ("ethanol_forcefield_dens", "two_body"),
                                                 ("ethanol_forcefield", "many_body")])
def test_recipe_fits_a_few_steps_and_logs_metrics(tmp_path, recipe, interaction):
    config = cli.parse_config(["fit", "--config", recipe])  # the packaged recipe, with its bases
    # validation stays in Lightning's default inference mode: the model must cope with it
    assert config["trainer"]["inference_mode"] is True
    backbone = config["model"]["init_args"]["model"]["init_args"]["backbone"]["init_args"]
    backbone.update(channels=8, num_layers=1, radial_hidden=16, interaction=interaction)  # small: tests the plumbing
    config["trainer"].update(max_steps=3, default_root_dir=str(tmp_path), log_every_n_steps=1)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path)
    if interaction == "two_body":  # the many-body layer keeps the EMA: its averaged copy must pair up
        config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if "EMA" not in c["class_path"]]
    config["data"]["init_args"].update(source=str(_ethanol_frames(tmp_path / "ethanol.extxyz")), test_source=None,
                                       split={"method": "random", "sizes": [8, 4, 0], "seed": 0}, batch_size=4)
    if config["model"]["init_args"]["dens"]:
        config["model"]["init_args"]["dens"]["init_args"]["probability"] = 1.0  # every step denoises
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(config))
    torch.set_num_threads(1)
    lightning_cli = cli.lightning_main(["fit", "--config", str(tmp_path / "recipe.yaml")])

    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = list(csv.DictReader(file))
    logged = {k for row in rows for k, v in row.items() if v}
    for metric in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse", "energy_per_atom_mae",
                   "energy_per_atom_rmse"):
        assert f"val/{metric}" in logged
    assert {"train/loss", "train/energy_loss", "train/forces_loss"} <= logged
    val = [float(row["val/forces_mae"]) for row in rows if row.get("val/forces_mae")]
    assert val and np.isfinite(val).all()
    task = lightning_cli.model
    assert isinstance(task, ForceFieldTask) and list(task.auxiliary_losses) == (["dens"] if "dens" in recipe else [])
    forces_std = lightning_cli.datamodule.statistics.std(keys.FORCES)
    if "dens" in recipe:
        assert {"train/dens_loss", "train/dens_weight"} <= logged
        # statistics from the data: the force encoding is scaled by the forces' spread
        assert task.dens.encoding.force_scale.item() == pytest.approx(forces_std)
    assert task.model.rescale.scale.item() == pytest.approx(forces_std)
    domain = task.model.domain  # the training frames: their shortest bonds, their size
    assert 0.8 < domain.shortest_distance.min().item() < 1.2 and domain.max_atoms.item() == 9


def test_a_multi_fidelity_recipe_fits_xtb_and_dft_labels_with_dens(tmp_path):
    config = cli.parse_config(["fit", "--config", "ethanol_forcefield_dens"])
    model = config["model"]["init_args"]["model"]["init_args"]
    model["backbone"]["init_args"].update(channels=8, num_layers=1, radial_hidden=16, interaction="two_body")
    model["levels"] = ["pbe/def2-svp", "gfn2-xtb"]
    config["trainer"].update(max_steps=3, default_root_dir=str(tmp_path), log_every_n_steps=1)
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp_path)
    config["trainer"]["callbacks"] = [c for c in config["trainer"]["callbacks"] if "EMA" not in c["class_path"]]
    frames = str(_ethanol_frames(tmp_path / "ethanol.extxyz"))
    xtb = {"info_keys": {"xtb_energy": "energy"}, "array_keys": {"xtb_forces": "forces"}, "results": []}
    config["data"]["init_args"].update(
        source=[{"source": frames, "level": "pbe/def2-svp", "reader_kwargs": {"results": ["energy", "forces"]}},
                {"source": frames, "level": "gfn2-xtb", "reader_kwargs": xtb}],
        levels=["pbe/def2-svp", "gfn2-xtb"], test_source=None, batch_size=4,
        split={"method": "random", "sizes": [12, 8, 0], "seed": 0})
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(config))
    torch.set_num_threads(1)
    lightning_cli = cli.lightning_main(["fit", "--config", str(tmp_path / "recipe.yaml")])

    task, statistics = lightning_cli.model, lightning_cli.datamodule.statistics
    assert task.model.levels == ["pbe/def2-svp", "gfn2-xtb"]
    # each head adds its own level's reference energies: ethanol's sum to ~-4200 eV at PBE, ~-300 at xTB
    ethanol = torch.tensor([6, 6, 8, 1, 1, 1, 1, 1, 1])
    offsets = task.model.reference_energies.atomref[:, ethanol].sum(-1).tolist()
    assert offsets == pytest.approx([sum(statistics.reference_energies("energy", level)[int(z)] for z in ethanol)
                                     for level in task.model.levels])
    assert offsets[0] < -4000 and -400 < offsets[1] < -200
    with open(next(tmp_path.rglob("metrics.csv"))) as file:
        rows = list(csv.DictReader(file))
    assert np.isfinite([float(r["val/forces_mae"]) for r in rows if r.get("val/forces_mae")]).all()


def _task(**dens):
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "C", "O"], channels=8, l_max=1, num_layers=1, cutoff=4.0,
                                   radial_hidden=16, extra_node_irreps="1x0e+1x1o")
    return ForceFieldTask(ForceFieldModel(backbone, hidden=16),
                          [Output("energy"), Output("forces", weight=10.0)],
                          dens=DeNS(l_max=1, **dens) if dens else None)


def _batch(n=2):
    rng = np.random.default_rng(0)
    data = []
    for _ in range(n):
        atoms = molecule("CH3CH2OH")
        atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
        data.append(AtomicData.from_ase(atoms, properties={keys.ENERGY: 0.0, keys.FORCES: rng.standard_normal((9, 3))}))
    return Batch.from_data_list(data)


def test_dens_force_loss_only_on_uncorrupted_atoms(monkeypatch):
    task = _task(probability=1.0, corrupt_ratio=0.5)
    batch = _batch()
    corruption = task.dens.corrupt(batch, torch.Generator().manual_seed(0))
    assert corruption.mask.any() and not corruption.mask.all()
    monkeypatch.setattr(task.dens, "corrupt", lambda b: corruption)
    reference = task.step_loss(batch, "train").item()
    # with the encoding off, other labels on the corrupted atoms change nothing: their forces
    # are not trained on ...
    task.dens.encode_forces = False
    without_encoding = task.step_loss(batch, "train").item()
    changed = batch.clone()
    changed[keys.FORCES][corruption.mask] = 1e6
    assert task.step_loss(changed, "train").item() == pytest.approx(without_encoding, rel=1e-6)
    # ... while the encoding does see them
    task.dens.encode_forces = True
    assert without_encoding != pytest.approx(reference, rel=1e-6)
    # every atom corrupted: no force term at all, and no NaN
    everything = Corruption(corruption.positions, torch.ones_like(corruption.mask), corruption.target,
                            corruption.sigma, corruption.denoised)
    monkeypatch.setattr(task.dens, "corrupt", lambda b: everything)
    assert torch.isfinite(task.step_loss(batch, "train"))


def test_dens_without_supervising_corrupted_structures(monkeypatch):
    task = _task(probability=1.0, corrupt_ratio=0.5, supervise_corrupted=False)
    batch = _batch(3)
    corruption = task.dens.corrupt(batch, torch.Generator().manual_seed(0))
    corruption.mask[9:] = False  # the first ethanol corrupted, the other two not
    monkeypatch.setattr(task.dens, "corrupt", lambda b: corruption)
    reference = task.step_loss(batch, "train").item()
    # the corrupted structure's energy and its uncorrupted atoms' forces are not trained on ...
    changed = batch.clone()
    changed[keys.ENERGY][0] = 1e6
    changed[keys.FORCES][:9][~corruption.mask[:9]] = 1e6
    assert task.step_loss(changed, "train").item() == pytest.approx(reference, rel=1e-6)
    # ... those of the others are
    changed[keys.ENERGY][1] = 1e6
    assert task.step_loss(changed, "train").item() != pytest.approx(reference, rel=1e-6)


def test_augmented_dens_keeps_the_corrupted_structures_labels(monkeypatch):
    task = _task(probability=1.0, corrupt_ratio=0.5, supervise_corrupted=False, augment=True)
    batch = _batch(2)
    corruption = task.dens.corrupt(batch, torch.Generator().manual_seed(0))
    assert corruption.mask[:9].any()
    monkeypatch.setattr(task.dens, "corrupt", lambda b: corruption)
    reference = task.step_loss(batch, "train").item()
    changed = batch.clone()
    changed[keys.ENERGY][0] = 1e6  # a corrupted structure's energy trains, on its uncorrupted self
    assert task.step_loss(changed, "train").item() != pytest.approx(reference, rel=1e-6)
    # and the denoising loss is part of the step's
    task.dens.loss_weight = task.dens.final_loss_weight = 0.0
    assert task.step_loss(batch, "train").item() != pytest.approx(reference, rel=1e-6)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="predicts"):
        ForceFieldTask(_task().model, [Output("dipole")])
    task, batch = _task(), _batch()
    batch[keys.FORCES][0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        task.step_loss(batch, "train")


def test_dens_task_round_trips_through_the_registry(tmp_path):
    from zoo.registry import instantiate_task, load_pretrained, save_pretrained

    config = cli.parse_config(["fit", "--config", "ethanol_forcefield_dens"])["model"]
    config["init_args"]["model"]["init_args"]["backbone"]["init_args"].update(channels=8, num_layers=1)
    task = instantiate_task(config)
    card = {"name": "ethanol-dens-test", "family": "force-field", "license": "mit", "description": "test",
            "units": {"positions": "Å", "energy": "eV", "forces": "eV/Å"}}
    loaded = load_pretrained(save_pretrained(task, tmp_path / "model", card))
    assert isinstance(loaded, ForceFieldTask) and isinstance(loaded.dens, DeNS)
    atoms = molecule("CH3CH2OH")
    atoms.calc = loaded.as_calculator()
    expected = task.eval().model(AtomicData.from_ase(atoms))
    assert atoms.get_potential_energy() == pytest.approx(expected[keys.ENERGY].item(), rel=1e-6)
