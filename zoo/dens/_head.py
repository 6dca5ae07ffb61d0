"""DeNS's denoising head is the shared :class:`zoo.nn.DenoisingHead` (one copy, in :mod:`zoo.nn`)."""

from zoo.nn import DenoisingHead

__all__ = ["DenoisingHead"]
