"""Two CPU processes (gloo) train through the zoo CLI and end with identical parameters, with the
recipes' EMA of the weights and a backbone input (DeNS's) that this recipe leaves out."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zoo.tasks import AtomisticTask

RECIPE = """
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 2
  strategy: ddp
  max_steps: 4
  limit_val_batches: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger: {class_path: lightning.pytorch.loggers.CSVLogger, init_args: {save_dir: ROOT, name: run}}
  callbacks:
    # first: at the end of training the EMA puts its average into the model the probe then saves
    - {class_path: zoo.callbacks.EMA, init_args: {decay: 0.9}}
    - {class_path: ddp_probe.SaveRankParameters, init_args: {folder: ROOT}}
    - {class_path: lightning.pytorch.callbacks.ModelCheckpoint, init_args: {dirpath: ROOT/ckpt, filename: last}}
model:
  class_path: zoo.tasks.AtomisticTask
  init_args:
    model:
      class_path: zoo.models.PropertyModel
      init_args:
        targets: [U0]
        backbone:
          class_path: zoo.models.EquivariantBackbone
          init_args: {elements: [H, C, N, O, F], channels: 8, l_max: 1, num_layers: 1, cutoff: 4.0,
                      extra_node_irreps: 1x0e+1x1o}
    outputs: [{name: U0, scale: 0.1}]
data:
  class_path: zoo.data.AtomicDataModule
  init_args:
    source: qm9
    reader_kwargs: {limit: 48}
    cutoff: 4.0
    targets: [U0]
    standardize: [U0]
    reference_energies: [U0]
    split: {method: random, sizes: [32, 8, 8], seed: 0}
    batch_size: 4
"""


@pytest.mark.slow
def test_two_process_ddp_ends_with_identical_parameters(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPE.replace("ROOT", str(tmp_path)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", str(recipe)], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    rank0, rank1 = (load_file(tmp_path / f"rank{r}_end.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    # training moved the weights, so the equality above is not that of two untouched copies
    start = load_file(tmp_path / "rank0_start.safetensors")
    assert any(not torch.equal(start[n], rank0[n]) for n in rank0 if n.startswith("model.backbone"))

    task = AtomisticTask.load_from_checkpoint(tmp_path / "ckpt" / "last.ckpt", weights_only=True)
    for name, value in task.state_dict().items():
        if name in rank0:  # the EMA averages the constant buffers too (reference energies): to rounding
            torch.testing.assert_close(value, rank0[name], msg=name)
    assert task.model.reference_energies.atomref.abs().sum() > 0  # statistics of the data went into the model
