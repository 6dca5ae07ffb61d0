"""Publishing the zoo's models: manifest entries, the package copies, Hub uploads, a local Hub.

Beside the registry, off the runtime path: it builds on :mod:`zoo.registry` (which never imports
it) and is used by ``zoo hub serve|add|push``::

    from zoo.publish import LocalHub, add_model, push
    add_model("runs/export/my-model", "org/my-model")   # zoo hub add
    push("my-model", dry_run=True)                      # zoo hub push --dry-run
    with LocalHub(port=None) as hub:                    # zoo hub serve
        os.environ["HF_ENDPOINT"] = hub.endpoint

Names are re-exported lazily from private modules, so that ``zoo hub serve`` does not import torch.
"""

from zoo._lazy import lazy_exports

_EXPORTS = {
    # _server
    "LocalHub": "_server", "build_repo": "_server", "build_mirrors": "_server", "git_revision": "_server",
    # _push
    "manifest_entry": "_push", "add_model": "_push", "push": "_push", "check_folder": "_push",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
