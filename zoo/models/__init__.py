"""Backbones and the heads that turn their features into predictions."""

from zoo.models.backbone import BackboneOutput, EquivariantBackbone
from zoo.models.property import PropertyModel

__all__ = ["BackboneOutput", "EquivariantBackbone", "PropertyModel"]
