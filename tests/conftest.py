"""Fixtures shared by several test folders.

A tiny published registry (``registry``, with the helpers of ``tiny``), for the registry's tests and
the publishing tools' (tests/registry, tests/publish): two models saved with save_pretrained,
``tiny-ho`` (served *and* shipped in the package dir: the offline fallback) and ``tiny-remote``
(served only), a manifest pinning them, and a package dir.
"""

import shutil
from types import SimpleNamespace

import pytest
import torch


@pytest.fixture(scope="module")
def pyscf_one_thread():
    """PySCF and torch each start an OpenMP pool; on a few shared cores they thrash.

    Modules that run PySCF use it with ``pytestmark = pytest.mark.usefixtures("pyscf_one_thread")``.
    """
    from pyscf import lib

    threads = (torch.get_num_threads(), lib.num_threads())
    torch.set_num_threads(1)
    lib.num_threads(1)
    yield
    torch.set_num_threads(threads[0])
    lib.num_threads(threads[1])


REPO_ORG = "zoo-test"


def tiny_config(elements=("H", "O"), targets=("energy",)):
    """A small AtomisticTask(PropertyModel(EquivariantBackbone)) config."""
    backbone = {"class_path": "zoo.models.EquivariantBackbone", "init_args": {
        "elements": list(elements), "channels": 4, "l_max": 1, "num_layers": 1, "cutoff": 3.0,
        "num_radial": 4, "radial_hidden": 8}}
    model = {"class_path": "zoo.models.PropertyModel",
             "init_args": {"backbone": backbone, "targets": list(targets), "hidden": 8}}
    optimizer = {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}}
    return {"class_path": "zoo.tasks.AtomisticTask",
            "init_args": {"model": model, "outputs": [{"name": t} for t in targets], "optimizer": optimizer}}


def tiny_info(name):
    return {
        "name": name, "family": "property", "license": "mit", "description": "A tiny model for the tests.",
        "units": {"positions": "Å", "energy": "eV"},
        "level_of_theory": {"xc": "b3lyp5", "basis": "def2-svp", "grid_level": 1},
        "training_data": {"dataset": "water-test", "size": 8},
        "metrics": {"split": "test: 4 random structures", "values": {"energy_mae": 0.25}},
        "recipe": "recipes/tiny.yaml",
    }


def water_batch(numbers=(8, 1, 1), seed=0):
    from torch_geometric.data import Batch

    from zoo.data import AtomicData

    generator = torch.Generator().manual_seed(seed)
    data = [AtomicData.from_arrays(list(numbers), torch.randn(len(numbers), 3, generator=generator))
            for _ in range(2)]
    return Batch.from_data_list(data)


@pytest.fixture(scope="session")
def tiny():
    """The helpers above, for the test modules."""
    return SimpleNamespace(config=tiny_config, info=tiny_info, batch=water_batch)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """Folders saved with save_pretrained, a manifest pinning them, and a package dir with one copy."""
    from zoo.publish import manifest_entry
    from zoo.registry import instantiate_task, parse_manifest, save_pretrained
    from zoo.registry._manifest import MANIFEST_VERSION

    root = tmp_path_factory.mktemp("registry")
    torch.manual_seed(0)
    tasks, entries = {}, []
    for name in ("tiny-ho", "tiny-remote"):
        task = instantiate_task(tiny_config())
        save_pretrained(task, root / "served" / name, tiny_info(name))
        tasks[name] = task.eval()
        entries.append(manifest_entry(root / "served" / name, f"{REPO_ORG}/{name}").to_dict())
    shutil.copytree(root / "served" / "tiny-ho", root / "package" / "tiny-ho")
    data = {"format": "zoo-manifest", "format_version": MANIFEST_VERSION, "models": entries}
    manifest = parse_manifest(data, str(root / "checkpoints.json"), root / "package")
    manifest.save(root / "checkpoints.json")
    return SimpleNamespace(root=root, served=root / "served", package=root / "package", manifest=manifest,
                           data=data, tasks=tasks, entries={e["name"]: e for e in entries})
