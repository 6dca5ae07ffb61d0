"""Fine-tuning: train the new heads on a fixed backbone first (the backbone's weights usually come
from a registry model, through :func:`zoo.registry.load_pretrained_weights`)."""

from __future__ import annotations

import logging

import torch
from lightning.pytorch.callbacks import BaseFinetuning

log = logging.getLogger("zoo.callbacks")


class FreezeBackbone(BaseFinetuning):
    """Keep the backbone of a fine-tuned task fixed for the first ``unfreeze_at_epoch`` epochs.

    On one process the backbone's parameters get ``requires_grad=False`` (saves its backward).
    Under DDP that would be wrong: DDP registers only the parameters that require gradients when it
    wraps the model, so parameters unfrozen later would never be all-reduced and the replicas would
    drift apart (Lightning issue #20340). There the backbone stays trainable and its gradients are
    dropped before every optimizer step until it unfreezes, which leaves its weights untouched.

    Args:
        unfreeze_at_epoch: first epoch (from 0) in which the backbone trains.
        backbone: dotted path(s) of the frozen submodule(s) of the task.
        train_bn: let normalisation layers inside the backbone keep training while it is frozen.
    """

    def __init__(self, unfreeze_at_epoch: int = 1, backbone: str | list[str] = "model.backbone", train_bn: bool = True):
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.paths = [backbone] if isinstance(backbone, str) else list(backbone)
        self.train_bn = train_bn
        self.frozen = False
        self._drop_gradients = False

    def _modules(self, pl_module) -> list[torch.nn.Module]:
        try:
            return [pl_module.get_submodule(path) for path in self.paths]
        except AttributeError as error:
            raise AttributeError(f"FreezeBackbone: {error}; set backbone= to the module to freeze") from None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._drop_gradients = trainer.world_size > 1
        super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module) -> None:
        if self.unfreeze_at_epoch <= 0:
            return
        self.frozen = True
        if not self._drop_gradients:
            self.freeze(self._modules(pl_module), train_bn=self.train_bn)

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        if not self.frozen or epoch < self.unfreeze_at_epoch:
            return
        self.frozen = False
        modules = self._modules(pl_module)
        self.make_trainable(modules)
        # the task's optimizer usually holds every parameter already; add only those it lacks
        held = {id(p) for group in optimizer.param_groups for p in group["params"]}
        new = [p for m in modules for p in m.parameters() if id(p) not in held]
        if new:
            optimizer.add_param_group({"params": new, "lr": optimizer.param_groups[0]["lr"]})
        log.info("FreezeBackbone: %s trains from epoch %d", ", ".join(self.paths), epoch)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.frozen and self._drop_gradients:
            for module in self._modules(pl_module):
                for parameter in module.parameters():
                    parameter.grad = None
