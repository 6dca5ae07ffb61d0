"""Write the tested model as a registry checkpoint folder, with the metrics just measured."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl


class ExportPretrained(pl.Callback):
    """After a test, save the task in Hub layout with its test metrics in the model card.

    The metrics are those the test loop logged (``test/<output>_<metric>``), so the card reports
    what was measured on the declared split and nothing else. Publish the folder with
    ``zoo hub add <folder> --repo-id ...``.

    The recipes carry this callback with their model card; ``zoo test`` exports only when asked
    (``zoo test --config <recipe> --ckpt_path <checkpoint> --export``).

    Args:
        card: the :class:`zoo.registry.ModelInfo` fields except ``metrics`` (name, family,
            license, elements, units, description, training_data, recipe, ...).
        split: how the test split was made, for the card (e.g. "random 2000/200/200, seed 0").
        folder: where ``config.json``, ``model.safetensors`` and ``README.md`` go. A relative
            folder is in ``trainer.default_root_dir`` (the recipes' ``pretrained``), so that it
            follows ``--trainer.default_root_dir``; by default ``pretrained/`` in the test's own
            run folder (``trainer.log_dir``), which no other test overwrites.
    """

    def __init__(self, card: dict[str, Any], split: str, folder: str | None = None):
        for key in ("name", "family", "license", "description", "recipe"):
            if isinstance(card.get(key), dict):
                # caught at the start of a fit, not after training, when the card is written
                raise ValueError(f"card {key!r} was read as a mapping, {card[key]}: the recipe parser reads "
                                 "'text: more text' inside a string as key: value; write it without ': '")
        from zoo.registry import ModelInfo

        # every field the card gives is checked now, at the start of a fit or test, not when it is written
        ModelInfo.check_given(card, "the recipe's model card (ExportPretrained card)")
        self.folder = None if folder is None else Path(folder)
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
        if self.folder is None:
            folder = Path(trainer.log_dir or trainer.default_root_dir) / "pretrained"
        else:
            folder = Path(trainer.default_root_dir) / self.folder  # an absolute folder stays as it is
        save_pretrained(pl_module, folder, {**self.card, "metrics": {"split": self.split, "values": values}})
        print(f"zoo: exported the tested model to {folder} (publish it with zoo hub add {folder} --repo-id ...)",
              flush=True)
