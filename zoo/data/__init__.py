"""The shared data layer: atomic graphs, canonical keys, neighbour lists, readers, splits."""

from zoo.data import keys
from zoo.data._atomic_data import AtomicData
from zoo.data.elements import ElementIndex, atomic_number
from zoo.data.neighbors import RadiusGraph, edge_vectors, radius_graph

__all__ = ["keys", "AtomicData", "ElementIndex", "atomic_number", "RadiusGraph", "edge_vectors", "radius_graph"]
