"""The warnings Lightning gives about its own code, not about the user's run, filtered wherever zoo
builds a Trainer: by the ``zoo`` command at start (:mod:`zoo._lightning_cli`) and inside
``warnings.catch_warnings()`` elsewhere (``zoo verify``)."""

import warnings


def ignore_lightning_noise() -> None:
    """Filters Lightning's warnings about its own code (idempotent)."""
    # Lightning builds torch's deprecated LeafSpec on every batch
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning)
    # `zoo test` of a recipe with EMA: the checkpoint's weights are already the averaged ones (the
    # EMA callback saves them so), so there is nothing to restore and nothing for the user to do
    warnings.filterwarnings("ignore", message="You're using the WeightAveraging callback, but loading a checkpoint outside")
