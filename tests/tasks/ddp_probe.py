"""A callback for the DDP test: each rank writes its parameters at the start and end of training."""

import lightning.pytorch as pl
from safetensors.torch import save_file


class SaveRankParameters(pl.Callback):
    def __init__(self, folder: str):
        self.folder = folder

    def _save(self, trainer, pl_module, when):
        state = {k: v.detach().clone().contiguous() for k, v in pl_module.state_dict().items()}
        save_file(state, f"{self.folder}/rank{trainer.global_rank}_{when}.safetensors")

    def on_train_start(self, trainer, pl_module):
        self._save(trainer, pl_module, "start")

    def on_train_end(self, trainer, pl_module):
        self._save(trainer, pl_module, "end")
