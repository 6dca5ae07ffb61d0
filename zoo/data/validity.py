"""Is a 3D structure a physical geometry of its molecular graph? Bond lengths and steric clashes.

The checks are those structure generators are judged by (PoseBusters-style, Buttenschoen et al.
2024): every bond of the graph has a length within ``bond_range`` times the sum of the two atoms'
covalent radii, and no two atoms at least three bonds apart come closer than ``clash_factor``
times the sum of their van der Waals radii (pairs one or two bonds apart are fixed by the bonds
and angles). Radii are ASE's (Cordero 2008 covalent, Bondi/Mantina van der Waals).

QM9's own B3LYP geometries pass with the defaults (`tests/data/test_validity.py` checks the
200 test molecules of `data/consistency`): bonds from 0.78x (triple bonds: the radii are
single-bond radii) to 1.10x their covalent sum over those and the 1461 training molecules, and the
closest contact 0.68x its van der Waals sum (an intramolecular N-H...N hydrogen bond), hence a
clash factor of 0.65 rather than PoseBusters' 0.7.

Example:
    >>> import numpy as np
    >>> from zoo.data.validity import structure_validity
    >>> positions = np.array([[0.0, 0.0, 0.0], [0.76, 0.0, 0.0]])  # H-H at 0.76 Å
    >>> structure_validity(positions, "[H:1][H:2]").valid
    True
    >>> print(structure_validity(0.5 * positions, "[H:1][H:2]").describe())
    bond H1-H2 of 0.380 Å is 0.61x the covalent radii sum 0.620 Å (allowed 0.75-1.25x)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Bond lengths allowed, as multiples of the two atoms' covalent radii sum.
BOND_RANGE = (0.75, 1.25)
#: Atoms three or more bonds apart must be at least this multiple of their van der Waals radii sum apart.
CLASH_FACTOR = 0.65


class InvalidStructureWarning(UserWarning):
    """A generated structure has a bond length out of range or a steric clash."""


@dataclass(frozen=True)
class Defect:
    """One atom pair out of range: a bond (``kind="bond"``) or a clash (``kind="clash"``)."""

    kind: str
    i: int
    j: int
    distance: float
    reference: float  # the covalent (bond) or van der Waals (clash) radii sum, Å
    symbols: tuple[str, str]

    def severity(self, bond_range=BOND_RANGE, clash_factor=CLASH_FACTOR) -> float:
        """How far past its limit the pair is (1: at the limit; 1.2: 20 % beyond it)."""
        ratio = self.distance / self.reference
        if self.kind == "bond":
            return max(bond_range[0] / ratio, ratio / bond_range[1])
        return clash_factor / ratio

    def describe(self, bond_range=BOND_RANGE, clash_factor=CLASH_FACTOR) -> str:
        a, b = f"{self.symbols[0]}{self.i + 1}", f"{self.symbols[1]}{self.j + 1}"
        ratio = self.distance / self.reference
        if self.kind == "bond":
            return (f"bond {a}-{b} of {self.distance:.3f} Å is {ratio:.2f}x the covalent radii sum "
                    f"{self.reference:.3f} Å (allowed {bond_range[0]:g}-{bond_range[1]:g}x)")
        return (f"clash {a}...{b}: {self.distance:.3f} Å apart, {ratio:.2f}x their van der Waals radii sum "
                f"{self.reference:.3f} Å (at least {clash_factor:g}x for atoms three or more bonds apart)")


@dataclass(frozen=True)
class StructureValidity:
    """The defects of one structure (:func:`structure_validity`); ``valid`` when there are none."""

    defects: list[Defect] = field(default_factory=list)
    bond_range: tuple[float, float] = BOND_RANGE
    clash_factor: float = CLASH_FACTOR

    @property
    def valid(self) -> bool:
        return not self.defects

    @property
    def bonds_valid(self) -> bool:
        return not any(d.kind == "bond" for d in self.defects)

    @property
    def clash_free(self) -> bool:
        return not any(d.kind == "clash" for d in self.defects)

    def describe(self, limit: int = 3) -> str:
        """The ``limit`` defects furthest past their limits, separated by "; " (an empty string
        for a valid structure)."""
        worst = sorted(self.defects, key=lambda d: -d.severity(self.bond_range, self.clash_factor))
        parts = [d.describe(self.bond_range, self.clash_factor) for d in worst[:limit]]
        if len(worst) > limit:
            parts.append(f"and {len(worst) - limit} more")
        return "; ".join(parts)


def structure_validity(positions, molecule, bond_range: tuple[float, float] = BOND_RANGE,
                       clash_factor: float = CLASH_FACTOR) -> StructureValidity:
    """Bond lengths and steric clashes of one structure of ``molecule``.

    Args:
        positions: [n_atoms, 3] positions (Å) or :class:`ase.Atoms`, in the molecule's atom order.
        molecule: an RDKit molecule with explicit hydrogens, or a mapped SMILES (as
            :func:`zoo.data.molgraph.mapped_smiles` writes it and generated structures carry in
            ``info["smiles"]``).
        bond_range: allowed bond lengths as multiples of the covalent radii sum.
        clash_factor: atoms three or more bonds apart must be at least this multiple of their van
            der Waals radii sum apart.

    Raises:
        ValueError: the positions do not have the molecule's number of atoms, or (for
            :class:`ase.Atoms`) not its elements in order.
    """
    from ase.data import chemical_symbols, covalent_radii, vdw_radii
    from rdkit import Chem

    from zoo.data.molgraph import mol_from_smiles

    mol = mol_from_smiles(molecule) if isinstance(molecule, str) else molecule
    numbers = np.array([atom.GetAtomicNum() for atom in mol.GetAtoms()])
    if hasattr(positions, "numbers") and positions.numbers.tolist() != numbers.tolist():
        raise ValueError("the structure's elements are not those of the molecule in its atom order")
    xyz = np.asarray(getattr(positions, "positions", positions), dtype=np.float64)
    if xyz.shape != (len(numbers), 3):
        raise ValueError(f"positions have shape {xyz.shape}, but the molecule has {len(numbers)} atoms")
    symbols = [chemical_symbols[z] for z in numbers]
    distance = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    hops = Chem.GetDistanceMatrix(mol)
    defects = []
    for i, j in zip(*np.triu_indices(len(numbers), k=1)):
        if hops[i, j] == 1:
            reference = covalent_radii[numbers[i]] + covalent_radii[numbers[j]]
            if not bond_range[0] <= distance[i, j] / reference <= bond_range[1]:
                defects.append(Defect("bond", int(i), int(j), float(distance[i, j]), float(reference),
                                      (symbols[i], symbols[j])))
        elif hops[i, j] >= 3:
            reference = vdw_radii[numbers[i]] + vdw_radii[numbers[j]]
            if distance[i, j] < clash_factor * reference:
                defects.append(Defect("clash", int(i), int(j), float(distance[i, j]), float(reference),
                                      (symbols[i], symbols[j])))
    return StructureValidity(defects, tuple(bond_range), float(clash_factor))
