"""Every model in the repository's checkpoints.json: listed, described, and loadable offline."""

import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

import zoo
from zoo.cli import main
from zoo.data import AtomicData, RadiusGraph
from zoo.registry import load_manifest

PUBLISHED = [entry.name for entry in load_manifest().models]


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_model_loads_offline_from_the_package_and_predicts(name, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    task = zoo.load(name)
    assert task.registry_info.source.startswith("the zoo package")
    assert not task.training
    elements = task.registry_info.info.elements
    dtype = next(task.parameters()).dtype  # float64 models (Hamiltonians) load in float64
    if task.registry_info.info.family == "consistency":
        # its input is a molecular graph: a structure generated for a SMILES, scored by the energy model
        water = task.model.generate("O", k=1, mode="one_shot", seed=0)[0]
        assert water.get_chemical_formula() == "H2O" and np.isfinite(task.model.energy(water))
        data = []
    else:
        data = [RadiusGraph(5.0)(AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.74]], dtype=dtype))] if "H" in elements else []
    if data:
        with torch.no_grad():
            predictions = task(Batch.from_data_list(data))
        assert all(torch.isfinite(v).all() for v in predictions.values())
    assert main(["info", name]) == 0
    assert capsys.readouterr().out.startswith(f"{name}: a {task.registry_info.info.family} model\n")
    assert main(["info", name, "--raw"]) == 0
    assert f"# {name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", [e.name for e in load_manifest().models if e.family == "property"])
def test_property_model_reproduces_the_metrics_in_its_card(name, monkeypatch, tmp_path):
    """Each output's test MAE in the card is recomputed from the package copy, on the split its
    recipe declares."""
    from zoo.registry import recipe_datamodule

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    task = zoo.load(name)
    info = task.registry_info.info
    datamodule = recipe_datamodule(info, tmp_path)  # the packaged recipe's data
    datamodule.setup("test")
    errors = {output.name: [] for output in task.outputs}
    with torch.no_grad():
        for batch in datamodule.test_dataloader():
            predictions = task(batch)
            for output in task.outputs:
                errors[output.name].append((predictions[output.name] - batch[output.target]).abs())
    for output in task.outputs:
        mae = torch.cat(errors[output.name]).mean().item()
        assert mae == pytest.approx(info.metrics["values"][f"{output.name}_mae"], abs=1e-4), output.name
