"""The packaged fine-tuning workflow of the general organic force field: ``zoo fit --config
organic_finetune`` on a user's frames at another level of theory starts from the published
backbone, whole, and re-fits the energy statistics for the new level."""

from pathlib import Path

import ase.io
import numpy as np
import torch

import zoo
from zoo.cli import lightning_main

ROOT = Path(__file__).resolve().parents[2]
#: PBE/def2-SVP frames of a molecule the general model never saw (it was pretrained on GFN2-xTB)
FRAMES = ROOT / "data" / "malonaldehyde" / "malonaldehyde_pbe_def2svp_train.extxyz"


def test_fine_tuning_starts_from_the_published_backbone_and_refits_the_energy_zero(tmp_path):
    frames = ase.io.read(FRAMES, index=":24")
    ase.io.write(tmp_path / "mine.extxyz", frames)
    run = tmp_path / "run"
    cli = lightning_main([
        "fit", "--config", "organic_finetune", "--data.init_args.source", str(tmp_path / "mine.extxyz"),
        "--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", str(run),
        "--trainer.logger.init_args.save_dir", str(run),
        "--model.init_args.optimizer.init_args.lr", "0",  # one step that moves nothing: what setup loaded
    ])
    tuned, published = cli.model.model, zoo.load("organic-dens-gfn2-xtb").model
    loaded = published.backbone.state_dict()
    assert loaded and tuned.backbone.state_dict().keys() == loaded.keys()
    for name, tensor in tuned.backbone.state_dict().items():
        assert torch.equal(tensor, loaded[name]), name
    # the energy head (one unnamed level) starts from the pretrained level's, gfn2-xtb
    assert torch.equal(tuned.readout[2].weight, published.readout[2].weight)

    # the heads' statistics are the new level's: PBE total energies, not xTB's
    pbe = np.array([a.get_potential_energy() for a in frames[:4]])
    tuned_energy = np.array([r["energy"] for r in cli.model.eval().predict(frames[:4])])
    xtb_energy = np.array([r["energy"] for r in zoo.load("organic-dens-gfn2-xtb").predict(frames[:4])])
    assert np.abs(tuned_energy - pbe).mean() < 1.0  # eV: re-fitted reference energies
    assert np.abs(xtb_energy - pbe).mean() > 100.0  # the pretrained model's energy zero is xTB's
    assert list(run.glob("version_0/checkpoints/last.ckpt"))
