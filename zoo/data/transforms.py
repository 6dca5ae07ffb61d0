"""Dataset statistics and the transforms built on them: per-element reference energies,
standardisation; and the molecular graph of a structure from its SMILES.

Statistics are always fitted on the training set only, and exposed (rather than hidden in the
data) so that a model can undo them: ``AtomicDataModule.statistics`` holds them per key. A label
with a mask (``has_energy``, ... see :data:`zoo.data.keys.MASKS`) counts only where the mask is
true.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from torch_geometric.transforms import BaseTransform

from zoo.data import keys
from zoo.data._atomic_data import require_finite
from zoo.data.elements import SYMBOLS, atomic_number

#: Extensive per-structure energies, standardised per atom by default (they grow with size).
EXTENSIVE = frozenset({keys.ENERGY, keys.U0, keys.U, keys.H, keys.G, keys.ZPVE})


def _values(dataset: Iterable, key: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The values of ``key`` and the atomic numbers of every structure that has them (its mask,
    if any, is true), as float64/int64 arrays; a NaN or inf among them is an error naming the
    structure, since it would make every statistic NaN."""
    values, numbers = [], []
    mask = keys.MASKS.get(key)
    for i, data in enumerate(dataset):
        if key not in data:
            raise KeyError(f"structure {i} has no {key!r}; it has {sorted(data.keys())}")
        if mask in data and not bool(data[mask].reshape(-1)[0]):
            continue
        try:
            require_finite(key, data[key])
        except ValueError as error:
            raise ValueError(f"structure {i}: {error}") from error
        values.append(data[key].detach().cpu().double().numpy())
        numbers.append(data[keys.ATOMIC_NUMBERS].cpu().numpy())
    if not values:
        raise ValueError(f"dataset is empty: cannot fit statistics of {key!r}")
    return values, numbers


def fit_reference_energies(dataset: Iterable, key: str = keys.ENERGY) -> dict[int, float]:
    """Per-element reference energies by linear least squares, ``E ≈ sum_atoms E_ref[Z]``.

    Solves ``counts @ refs = E`` with :func:`numpy.linalg.lstsq`, where ``counts`` is the
    [n_structures, n_elements] matrix of element counts. When compositions do not determine the
    references (e.g. one molecule, as in MD17), the minimum-norm solution is returned; it still
    removes the composition-dependent offset exactly.

    Args:
        dataset: structures with ``key`` ([1], eV); use the training set only.
        key: the per-structure energy.

    Returns:
        ``{Z: reference energy}`` in the unit of ``key``.

    Example:
        >>> from zoo.data import AtomicData
        >>> h2 = AtomicData.from_arrays([1, 1], [[0, 0, 0], [0, 0, 0.7]], energy=-2.0)
        >>> h2o = AtomicData.from_arrays([8, 1, 1], [[0, 0, 0], [0, 0, 1], [0, 1, 0]], energy=-7.0)
        >>> {z: round(e, 6) for z, e in fit_reference_energies([h2, h2o]).items()}
        {1: -1.0, 8: -5.0}
    """
    energies, numbers = _values(dataset, key)
    if any(e.size != 1 for e in energies):
        raise ValueError(f"{key!r} must hold one number per structure to fit reference energies")
    elements = np.unique(np.concatenate(numbers))
    column = {int(z): i for i, z in enumerate(elements)}
    counts = np.zeros((len(numbers), elements.size))
    for row, z in enumerate(numbers):
        np.add.at(counts[row], [column[int(x)] for x in z], 1.0)
    target = np.array([float(e.reshape(())) for e in energies])
    solution, *_ = np.linalg.lstsq(counts, target, rcond=None)
    return {int(z): float(e) for z, e in zip(elements, solution)}


def _as_references(references: Mapping) -> dict[int, float]:
    # YAML and JSON give string keys ("1", "H"); accept symbols and numbers alike
    out = {}
    for element, value in references.items():
        z = atomic_number(int(element) if str(element).isdigit() else element)
        out[z] = float(value)
        if not np.isfinite(out[z]):
            raise ValueError(f"the reference energy of {SYMBOLS[z]} is {out[z]}; it must be a number")
    return out


class SubtractReferenceEnergies(BaseTransform):
    """Subtract ``sum_atoms E_ref[Z]`` from a per-structure energy.

    Args:
        references: ``{Z or symbol: energy}``, e.g. from :func:`fit_reference_energies`.
        key: the energy to correct.
        fidelity: correct only the structures of this level of theory
            (:data:`~zoo.data.keys.FIDELITY`) and pass the others through, for multi-fidelity
            data whose levels have their own references.

    Raises:
        ValueError: a structure contains an element without a reference.
    """

    def __init__(self, references: Mapping, key: str = keys.ENERGY, fidelity: int | None = None):
        self.references = _as_references(references)
        self.key = key
        self.fidelity = fidelity
        table = torch.full((len(SYMBOLS),), float("nan"), dtype=torch.float64)
        for z, value in self.references.items():
            table[z] = value
        self._table = table

    def offset(self, z: torch.Tensor) -> torch.Tensor:
        """The reference energy of a structure with atomic numbers ``z`` (float64 scalar)."""
        values = self._table[z.cpu()]
        if torch.isnan(values).any():
            missing = sorted({SYMBOLS[int(n)] for n in z.cpu()[torch.isnan(values)]})
            known = [SYMBOLS[n] for n in sorted(self.references)]
            raise ValueError(f"no reference energy for element(s) {missing}; references exist for {known}")
        return values.sum()

    def forward(self, data):
        if self.fidelity is not None and int(data[keys.FIDELITY]) != self.fidelity:
            return data
        if self.key not in data:
            raise KeyError(f"the structure has no {self.key!r} to subtract reference energies from; "
                           f"it has {sorted(data.keys())}")
        value = data[self.key]
        # assign a new tensor: datasets hand out shallow copies that share storage
        data[self.key] = value - self.offset(data[keys.ATOMIC_NUMBERS]).to(value.dtype).to(value.device)
        return data

    def __repr__(self) -> str:
        level = "" if self.fidelity is None else f", fidelity={self.fidelity}"
        return f"{type(self).__name__}(key={self.key!r}, {len(self.references)} elements{level})"


def compute_statistics(dataset: Iterable, key: str, per_atom: bool | None = None) -> dict:
    """Mean and standard deviation of ``key`` over a dataset (the training set).

    Args:
        dataset: structures carrying ``key``.
        key: a per-structure or per-atom property; all its components are pooled.
        per_atom: divide per-structure values by the number of atoms first (for extensive
            quantities). Default: true for :data:`EXTENSIVE` keys. Ignored for per-atom keys.

    Returns:
        ``{"mean": float, "std": float, "per_atom": bool, "count": int}`` (population std).
    """
    values, numbers = _values(dataset, key)
    per_structure = all(v.shape[:1] == (1,) for v in values) and key not in keys.PER_ATOM
    if per_atom is None:
        per_atom = key in EXTENSIVE
    per_atom = bool(per_atom and per_structure)
    if per_atom:
        values = [v / z.size for v, z in zip(values, numbers)]
    flat = np.concatenate([v.reshape(-1) for v in values])
    return {"mean": float(flat.mean()), "std": float(flat.std()), "per_atom": per_atom, "count": int(flat.size)}


class Standardize(BaseTransform):
    """Standardise properties, ``(x - mean) / std``, with statistics fitted on a training set.

    Per-atom statistics (for extensive energies) shift by ``n_atoms * mean`` and scale by
    ``std``, matching a model that adds ``mean`` per atom and sums. Usually a model applies the
    inverse itself from :attr:`statistics` and the data stay in physical units; this transform
    is for models that want standardised targets.

    Args:
        keys_: properties to standardise.
        per_atom: ``{key: bool}`` overrides of the default (true for :data:`EXTENSIVE` keys).
        statistics: precomputed statistics (from :func:`compute_statistics`), instead of :meth:`fit`.
    """

    def __init__(self, keys_: Sequence[str], per_atom: Mapping[str, bool] | None = None,
                 statistics: Mapping[str, Mapping] | None = None):
        self.keys = list(keys_)
        self.per_atom = dict(per_atom or {})
        self.statistics = {k: dict(v) for k, v in (statistics or {}).items()}

    def fit(self, dataset: Iterable) -> "Standardize":
        """Compute the statistics of every key on ``dataset`` (the training set)."""
        dataset = list(dataset) if not hasattr(dataset, "__len__") else dataset
        for key in self.keys:
            stats = compute_statistics(dataset, key, self.per_atom.get(key))
            if not stats["std"] > 0:
                raise ValueError(f"{key!r} is constant on the training set ({stats['count']} values); "
                                 "it cannot be standardised")
            self.statistics[key] = stats
        return self

    def _stats(self, key):
        if key not in self.statistics:
            raise RuntimeError(f"Standardize has no statistics for {key!r}; call fit() on the training set first")
        s = self.statistics[key]
        return s["mean"], s["std"], s.get("per_atom", False)

    def _shift(self, data, key):
        mean, std, per_atom = self._stats(key)
        if not per_atom:
            return mean, std
        # one structure or a batch: n_atoms holds one count per structure
        n_atoms = data[keys.N_ATOMS].to(data[key].dtype)
        return mean * n_atoms.reshape(-1, *([1] * (data[key].dim() - 1))), std

    def forward(self, data):
        for key in self.keys:
            shift, std = self._shift(data, key)
            data[key] = (data[key] - shift) / std
        return data

    def inverse(self, data):
        """Undo :meth:`forward` (e.g. on predictions, given ``n_atoms``)."""
        for key in self.keys:
            shift, std = self._shift(data, key)
            data[key] = data[key] * std + shift
        return data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.keys})"


#: The per-atom features :class:`MolecularGraph` computes with RDKit, in column order. Each
#: one-hot group ends with a slot for anything else.
ATOM_FEATURE_NAMES = (
    "aromatic", "in_ring",
    "sp", "sp2", "sp3", "other_hybridization",
    "degree_1", "degree_2", "degree_3", "degree_4", "other_degree",
    "hydrogens_0", "hydrogens_1", "hydrogens_2", "hydrogens_3", "other_hydrogens",
    "negative_charge", "neutral", "positive_charge",
)


def atom_features(mol) -> np.ndarray:
    """[n_atoms, len(ATOM_FEATURE_NAMES)] float64 features of the atoms of an RDKit molecule (with
    explicit hydrogens): aromaticity, ring membership, hybridisation, degree (hydrogens
    included), number of bonded hydrogens and the sign of the formal charge, as one-hots."""
    from rdkit import Chem

    hybridizations = {Chem.HybridizationType.SP: 0, Chem.HybridizationType.SP2: 1, Chem.HybridizationType.SP3: 2}
    features = np.zeros((mol.GetNumAtoms(), len(ATOM_FEATURE_NAMES)))
    for i, atom in enumerate(mol.GetAtoms()):
        features[i, 0] = atom.GetIsAromatic()
        features[i, 1] = atom.IsInRing()
        features[i, 2 + hybridizations.get(atom.GetHybridization(), 3)] = 1
        degree = atom.GetDegree()
        features[i, 6 + (degree - 1 if 1 <= degree <= 4 else 4)] = 1
        hydrogens = atom.GetTotalNumHs(includeNeighbors=True)
        features[i, 11 + min(hydrogens, 4)] = 1
        features[i, 17 + int(np.sign(atom.GetFormalCharge()))] = 1
    return features


def molecular_graph(smiles: str, atomic_numbers: Sequence[int] | None = None,
                    dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The molecular graph of a SMILES as canonical keys: :data:`~zoo.data.keys.BOND_INDEX`,
    :data:`~zoo.data.keys.BOND_TYPE` (:func:`zoo.data.molgraph.bond_graph`) and
    :data:`~zoo.data.keys.ATOM_FEATURES` (:func:`atom_features`, in ``dtype``).

    The atoms are those of :func:`zoo.data.molgraph.mol_from_smiles`: in the order of the atom-map
    numbers of a mapped SMILES (:func:`zoo.data.molgraph.mapped_smiles`), hydrogens included.

    Args:
        smiles: the molecule.
        atomic_numbers: the elements of the structure the graph is for, in its atom order; a
            SMILES with other elements or another order is an error.

    Raises:
        ValueError: RDKit cannot parse the SMILES, or its atoms are not ``atomic_numbers``.
    """
    from zoo.data.molgraph import bond_graph, mol_from_smiles

    mol = mol_from_smiles(smiles)
    if atomic_numbers is not None:
        found = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
        expected = [int(z) for z in atomic_numbers]
        if found != expected:
            raise ValueError(
                f"the SMILES {smiles!r} has atoms {[SYMBOLS[z] for z in found]}, but the structure has "
                f"{[SYMBOLS[z] for z in expected]} in this order; write the SMILES with atom-map numbers in "
                "the structure's order (zoo.data.molgraph.mapped_smiles) or reorder the structure "
                "(zoo.data.molgraph.match_to_smiles)"
            )
    bond_index, bond_type = bond_graph(mol)
    return {
        keys.BOND_INDEX: torch.as_tensor(bond_index),
        keys.BOND_TYPE: torch.as_tensor(bond_type),
        keys.ATOM_FEATURES: torch.as_tensor(atom_features(mol), dtype=dtype or torch.get_default_dtype()),
    }


class MolecularGraph(BaseTransform):
    """Add the molecular graph (bonds, bond types, atom features; see :func:`molecular_graph`) of
    a structure's ``smiles``, which must list its atoms in the structure's order (a mapped SMILES).

    Readers apply it once when reading (``read_ase(..., molecular_graph=True)``); models that
    start from a SMILES apply it to the structures they build.
    """

    def forward(self, data):
        if keys.SMILES not in data:
            raise KeyError(f"the structure has no {keys.SMILES!r} to build its molecular graph from; "
                           f"it has {sorted(data.keys())}")
        graph = molecular_graph(data[keys.SMILES], data[keys.ATOMIC_NUMBERS].tolist(), data[keys.POSITIONS].dtype)
        for key, value in graph.items():
            data[key] = value
        return data
