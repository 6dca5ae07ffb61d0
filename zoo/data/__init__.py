"""The shared data layer: atomic graphs, canonical keys, neighbour lists, readers, splits."""

from zoo.data import keys, units
from zoo.data._atomic_data import AtomicData
from zoo.data._batch import atom_ranges, batch_index, kind_mask, n_structures, select_structures
from zoo.data._statistics import Statistics, StatisticsSource, UsesStatistics
from zoo.data.dataset import AtomicDataset
from zoo.data.elements import ElementIndex, atomic_number
from zoo.data.neighbors import RadiusGraph, edge_vectors, radius_graph
from zoo.data.readers import (
    HamiltonianMetadata,
    read_ase,
    read_hamiltonian_h5,
    read_md17,
    read_qm9,
    read_structures,
    write_hamiltonian_h5,
)
from zoo.data.splits import (
    Split,
    group_labels,
    group_split,
    load_split,
    random_split,
    size_split,
)
from zoo.data.validity import InvalidStructureWarning, StructureValidity, structure_validity
from zoo.data.transforms import (
    Standardize,
    SubtractReferenceEnergies,
    compute_statistics,
    fit_reference_energies,
)

__all__ = [
    "keys", "units", "AtomicData", "AtomicDataset", "ElementIndex", "atomic_number",
    "batch_index", "n_structures", "atom_ranges", "kind_mask", "select_structures",
    "Statistics", "StatisticsSource", "UsesStatistics",
    "RadiusGraph", "edge_vectors", "radius_graph",
    "read_structures", "read_qm9", "read_md17", "read_ase", "read_hamiltonian_h5", "write_hamiltonian_h5",
    "HamiltonianMetadata", "Split", "random_split", "group_split", "group_labels", "size_split", "load_split",
    "fit_reference_energies", "SubtractReferenceEnergies", "Standardize", "compute_statistics",
    "AtomicDataModule", "structure_validity", "StructureValidity", "InvalidStructureWarning",
]


def __getattr__(name):
    # imported on first use: Lightning is heavy, and readers or an ASE calculator do not need it
    if name == "AtomicDataModule":
        from zoo.data.datamodule import AtomicDataModule

        return AtomicDataModule
    raise AttributeError(f"module 'zoo.data' has no attribute {name!r}")
