"""Write the tested model as a registry checkpoint folder, with the metrics just measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class ExportPretrained(pl.Callback):
    """After ``zoo test``, save the task in Hub layout with its test metrics in the model card.

    The metrics are those the test loop logged (``test/<output>_<metric>``), so the card reports
    what was measured on the declared split and nothing else. Publish the folder with
    ``zoo hub add <folder> --repo-id ...``.

    Args:
        folder: where ``config.json``, ``model.safetensors`` and ``README.md`` go.
        card: the :class:`zoo.registry.ModelInfo` fields except ``metrics`` (name, family,
            license, elements, units, description, training_data, recipe, ...).
        split: how the test split was made, for the card (e.g. "random 2000/200/200, seed 0").
    """

    def __init__(self, folder: str, card: dict[str, Any], split: str):
        for key in ("name", "family", "license", "description", "recipe"):
            if isinstance(card.get(key), dict):
                # caught at the start of a fit, not after training, when the card is written
                raise ValueError(f"card {key!r} was read as a mapping, {card[key]}: the recipe parser reads "
                                 "'text: more text' inside a string as key: value; write it without ': '")
        self.folder = Path(folder)
        self.card = dict(card)
        self.split = split

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        from zoo.registry import save_pretrained

        values = {name.removeprefix("test/"): float(f"{float(value):.6g}")  # 6 significant digits
                  for name, value in trainer.callback_metrics.items() if name.startswith("test/")}
        if not values:
            raise RuntimeError("the test loop logged no test/ metrics; nothing to put in the model card")
        save_pretrained(pl_module, self.folder, {**self.card, "metrics": {"split": self.split, "values": values}})
