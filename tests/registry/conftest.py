"""A tiny published registry for the tests: two models, a manifest, a package dir, a local Hub.

- ``tiny-ho``: served by the local Hub *and* shipped in the package dir (the offline fallback);
- ``tiny-remote``: served by the local Hub only.

``evil`` puts on sys.path a package whose import leaves a marker file: loading must never import it.

Every test starts with a fresh memory of unreachable Hubs (the registry keeps it per process, and
a later test may get the port of a server an earlier one stopped). The Hub client's telemetry, which
would ask huggingface.co, is off.
"""

import shutil
import sys
import textwrap
from types import SimpleNamespace

import pytest
import torch
from huggingface_hub import constants
from torch_geometric.data import Batch

from zoo.data import AtomicData
from zoo.registry import LocalHub, _hub, _load, instantiate_task, manifest_entry, parse_manifest, save_pretrained
from zoo.registry._manifest import MANIFEST_VERSION

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
    generator = torch.Generator().manual_seed(seed)
    data = [AtomicData.from_arrays(list(numbers), torch.randn(len(numbers), 3, generator=generator))
            for _ in range(2)]
    return Batch.from_data_list(data)


@pytest.fixture(autouse=True, scope="session")
def no_telemetry():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")  # for the subprocesses
        patch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # read when huggingface_hub was imported
        yield


@pytest.fixture(autouse=True)
def no_endpoint_remembered(monkeypatch):
    monkeypatch.setattr(_hub, "_unreachable_endpoints", {})
    monkeypatch.setattr(_load, "_announced_unreachable", set())


@pytest.fixture(scope="session")
def tiny():
    """The helpers above, for the test modules."""
    return SimpleNamespace(config=tiny_config, info=tiny_info, batch=water_batch)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """Folders saved with save_pretrained, a manifest pinning them, and a package dir with one copy."""
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


@pytest.fixture(scope="session")
def local_hub(registry, tmp_path_factory):
    """olah on 127.0.0.1 serving both models from deterministic git repos."""
    with LocalHub(registry.manifest, registry.served, tmp_path_factory.mktemp("hub"), port=None) as hub:
        yield hub


@pytest.fixture
def hub_env(local_hub, monkeypatch, tmp_path):
    """HF_ENDPOINT at the local Hub, an empty Hub cache of this test's own; returns the cache."""
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "hf-cache"


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """A package ``evilmodel`` on sys.path whose import writes a marker file; returns the marker."""
    marker = tmp_path / "imported"
    package = tmp_path / "site" / "evilmodel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("evilmodel ran")

        class Task:
            pass

        def make(*args, **kwargs):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "evilmodel", raising=False)
    yield marker
    sys.modules.pop("evilmodel", None)
