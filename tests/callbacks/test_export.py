import pytest

from zoo.callbacks import ExportPretrained


def test_a_description_read_as_a_mapping_is_refused_before_training(tmp_path):
    # what the recipe parser makes of "description: Water model: trained on MD"
    card = {"name": "m", "description": {"Water model": "trained on MD"}}
    with pytest.raises(ValueError, match="'description' was read as a mapping.*without ': '"):
        ExportPretrained(card, split="random", folder=str(tmp_path))
    ExportPretrained({"name": "m", "description": "Water model, trained on MD"}, split="random", folder=str(tmp_path))
