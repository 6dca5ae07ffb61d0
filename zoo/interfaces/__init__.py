"""Bridges to other codes: the ASE calculator (imported on first use, so that ``import zoo`` stays light)."""

__all__ = ["ZooCalculator"]


def __getattr__(name):
    if name == "ZooCalculator":
        from zoo.interfaces.ase import ZooCalculator

        return ZooCalculator
    raise AttributeError(f"module 'zoo.interfaces' has no attribute {name!r}")
