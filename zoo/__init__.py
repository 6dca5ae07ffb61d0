"""zoo: a PyTorch Lightning model zoo for physics-consistent molecular machine learning."""

__version__ = "0.1.0"

#: Registry functions offered at the top level; imported on first use so that ``import zoo`` stays fast.
_REGISTRY = ("load", "list_models", "download")


def __getattr__(name: str):
    if name == "keep_freed_memory":
        from zoo._allocator import keep_freed_memory

        return keep_freed_memory
    if name in _REGISTRY:
        from zoo import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'zoo' has no attribute {name!r}")
