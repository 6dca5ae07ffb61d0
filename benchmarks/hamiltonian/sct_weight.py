"""Choose the SCT loss weight of a mixed recipe by balancing gradient norms at its starting model.

The supervised loss (MAE + MSE, Hartree, and the occupied-space loss when the recipe has one) and
the SCT loss (mean squared residual, Hartree²) have unrelated scales. This loads the recipe's
starting model (its ``pretrained``), takes a few labelled and unlabelled training batches, and
prints the norm of the gradient of each loss with respect to the weights, and their ratio: the
``sct_weight`` at which both pull equally.

    OMP_NUM_THREADS=1 python benchmarks/hamiltonian/sct_weight.py hamiltonian_qm9_sct
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path

import torch
from torch_geometric.loader import DataLoader

from zoo.cli import parse_config
from zoo.data import keys
from zoo.data.datamodule import AtomicDataModule
from zoo.registry import load
from zoo.tasks import HamiltonianTask

ROOT = Path(__file__).resolve().parents[2]


def _gradient_norm(task, loss) -> float:
    task.zero_grad()
    loss.backward()
    return float(torch.linalg.vector_norm(torch.stack(
        [p.grad.norm() for p in task.parameters() if p.grad is not None])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="a recipe file or a packaged recipe's name")
    parser.add_argument("--batches", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    # the tasks log their losses outside a Trainer here: nothing to record
    warnings.filterwarnings("ignore", message=r".*`self.trainer` reference is not registered")

    recipe = parse_config(["fit", "--config", args.recipe])  # with its bases
    options = recipe["model"]["init_args"]
    # the recipe's starting weights, in the dtype they were trained in (the recipe's data dtype);
    # its supervised loss as trained (outputs and occupied-space loss) and its SCT targets (grid,
    # density fitting)
    model = load(str(ROOT / options["pretrained"])).model
    supervised_task = HamiltonianTask(model, mode="supervised", occupied_weight=options.get("occupied_weight", 0.0))
    task = HamiltonianTask(model, mode="mixed", sct_grid_level=options.get("sct_grid_level"),
                           sct_density_fitting=options.get("sct_density_fitting"))
    data = AtomicDataModule(**recipe["data"]["init_args"])
    data.setup("fit")
    torch.manual_seed(0)
    labelled = iter(DataLoader(data.train_dataset, batch_size=data.batch_size, shuffle=True))
    unlabelled = iter(DataLoader(data.unlabelled_dataset, batch_size=data.batch_size, shuffle=True))
    supervised, sct, sct_losses = [], [], []
    for _ in range(args.batches):
        batch = next(labelled)
        supervised.append(_gradient_norm(task, supervised_task.training_step({"labelled": batch}, 0)))
        batch = next(unlabelled)
        loss = task.self_consistency_loss(batch, task(batch)[keys.HAMILTONIAN])
        sct_losses.append(float(loss))
        sct.append(_gradient_norm(task, loss))
    result = {"supervised_grad_norm": statistics.mean(supervised), "sct_grad_norm": statistics.mean(sct),
              "sct_loss": statistics.mean(sct_losses),
              "balanced_sct_weight": statistics.mean(supervised) / statistics.mean(sct)}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
