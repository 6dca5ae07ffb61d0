import pytest

from zoo.callbacks import ExportPretrained
from zoo.registry import ManifestError


def test_a_description_read_as_a_mapping_is_refused_before_training(tmp_path):
    # what the recipe parser makes of "description: Water model: trained on MD"
    card = {"name": "m", "description": {"Water model": "trained on MD"}}
    with pytest.raises(ValueError, match="'description' was read as a mapping.*without ': '"):
        ExportPretrained(card, split="random", folder=str(tmp_path))
    ExportPretrained({"name": "m", "description": "Water model, trained on MD"}, split="random", folder=str(tmp_path))


def test_a_card_field_of_the_wrong_kind_is_refused_before_testing(tmp_path):
    # the card is written after the test loop, minutes or hours later; its fields are checked now
    card = {"name": "m", "training_data": {"dataset": "d", "size": "SIZE"}}
    with pytest.raises(ManifestError, match="model card.*'training_data'.*'size'.*positive integer"):
        ExportPretrained(card, split="random", folder=str(tmp_path))
    with pytest.raises(ManifestError, match="unknown field.*'sise'"):
        ExportPretrained({"name": "m", "sise": 3}, split="random", folder=str(tmp_path))
