"""The registry of pretrained models: manifest, checkpoint format, Hub I/O, cache and integrity, cards.

One place downloads, verifies, caches and loads models::

    import zoo
    zoo.list_models()                       # names in checkpoints.json
    zoo.list_models(family="hamiltonian", pattern="*-water-*")
    task = zoo.load("qm9-u0-demo")          # LightningModule in eval mode, sha256-verified
    task = zoo.load("hf://org/repo@<commit>")
    task = zoo.load("path/to/folder")
    zoo.registry.verify_model("qm9-u0-demo")  # recompute the card's test metrics

Publishing (manifest entries, uploads, the local Hub server) is :mod:`zoo.publish`, which builds on
this package and is never imported by it. Names are re-exported lazily from private modules, so
that ``import zoo.registry`` (and ``zoo list``) does not import torch.
"""

from zoo._lazy import lazy_exports

_EXPORTS = {
    # _errors
    "RegistryError": "_errors", "ManifestError": "_errors", "ModelNotFoundError": "_errors",
    "IntegrityError": "_errors", "DownloadError": "_errors", "CheckpointFormatError": "_errors",
    "UnsupportedElementsError": "_errors", "UntrustedCodeError": "_errors", "SupersededModelWarning": "_errors",
    # _manifest
    "Manifest": "_manifest", "ModelEntry": "_manifest", "ModelInfo": "_manifest", "FileEntry": "_manifest",
    "FAMILIES": "_manifest", "HUB_FILES": "_manifest", "load_manifest": "_manifest", "parse_manifest": "_manifest",
    "default_manifest_path": "_manifest",
    # _checkpoint
    "FORMAT": "_checkpoint", "FORMAT_VERSION": "_checkpoint", "save_pretrained": "_checkpoint",
    "upgrade_config": "_checkpoint", "read_config": "_checkpoint", "task_config": "_checkpoint",
    # _restore
    "load_pretrained": "_restore", "load_run": "_restore", "instantiate_task": "_restore", "Provenance": "_restore",
    # _trust
    "check_trusted": "_trust",
    # _cards
    "render_card": "_cards", "check_card": "_cards", "describe": "_cards", "metric_unit": "_cards",
    # _hub
    "fetch": "_hub", "sha256_file": "_hub",
    # _load
    "load": "_load", "download": "_load", "list_models": "_load", "select_models": "_load", "model_card": "_load",
    "resolve": "_load",
    # _finetune
    "load_pretrained_weights": "_finetune", "LoadReport": "_finetune", "RowsPerTarget": "_finetune",
    # _verify
    "verify_model": "_verify", "Verification": "_verify", "VerificationError": "_verify", "MissingDataError": "_verify",
    "recipe_datamodule": "_verify", "recipe_test_set": "_verify",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
