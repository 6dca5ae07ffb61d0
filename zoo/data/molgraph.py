"""Molecular graphs from SMILES, in a fixed atom order shared with 3D structures.

A model that maps a molecular graph to a structure (or a structure to an energy) needs the atoms of
the graph and of the 3D frame in the same order. RDKit's canonical SMILES reorders atoms, so the
order is carried by **atom-map numbers**: :func:`mapped_smiles` writes a SMILES whose map number
on atom i is i + 1, and :func:`mol_from_smiles` puts the atoms of such a SMILES back in that order.
A frame's ``info["smiles"]`` written so describes exactly its atoms, hydrogens included.

:func:`match_to_smiles` reorders a 3D structure made elsewhere (QM9's own geometries) into the
atom order of a SMILES by matching its bonds, hydrogens included, against the SMILES graph; a
structure whose bonds differ from its SMILES is an error, never silently mapped.
:func:`same_connectivity` checks that an optimisation kept the bonds of a structure already in
SMILES order.

The bonds of a 3D structure with n bonds in its SMILES are its n atom pairs of smallest distance
relative to the sum of their covalent radii (RDKit's table), provided the longest of them is at
most :data:`MAX_BOND_RATIO` times that sum. A fixed cut-off (RDKit's ``DetermineConnectivity``,
1.3 times the radii) bonds the bridgeheads of bicyclo[1.1.1]pentanes (1.87 Å apart, 1.23 times
the C–C radii) and rejects valid QM9 molecules; ranking the pairs does not: over every fifth
qm9pack molecule (26,167) the bonds of the SMILES are exactly its closest pairs, the longest
bond is at most 1.28 times the radii and the next pair is always at least 0.08 further.

RDKit is imported when used.
"""

from __future__ import annotations

import numpy as np

#: Bond type codes of :func:`bond_graph`. 0 is never used, so it is free for "no bond" or padding.
SINGLE, DOUBLE, TRIPLE, AROMATIC = 1, 2, 3, 4
#: RDKit bond type name -> code.
BOND_TYPES: dict[str, int] = {"SINGLE": SINGLE, "DOUBLE": DOUBLE, "TRIPLE": TRIPLE, "AROMATIC": AROMATIC}
#: Longest bond of a 3D structure, relative to the sum of the two covalent radii (RDKit's
#: ``DetermineConnectivity`` default); a SMILES bond stretched further counts as broken.
MAX_BOND_RATIO = 1.3


def mol_from_smiles(smiles: str):
    """An RDKit molecule for ``smiles``: parsed, sanitized, with explicit hydrogen atoms.

    Atoms come in the order the SMILES writes them, then the implicit hydrogens as
    ``Chem.AddHs`` appends them (one heavy atom after the other). If every atom written in the
    SMILES carries an atom-map number (as :func:`mapped_smiles` writes them), the atoms are
    reordered so that atom i is the one with map number i + 1, and the map numbers are cleared.

    Raises:
        ValueError: RDKit cannot parse or sanitize the SMILES (RDKit's reason is given), or atom-map
            numbers are on some atoms only, or are not 1..n once each.
    """
    from rdkit import Chem
    from rdkit.rdBase import BlockLogs

    _logs_blocked = BlockLogs()  # RDKit prints parse errors itself; ours says more
    params = Chem.SmilesParserParams()
    params.removeHs = False  # mapped hydrogens are atoms of the frame: keep them where they are
    params.sanitize = False  # sanitized below, to report RDKit's reason
    mol = Chem.MolFromSmiles(smiles, params) if isinstance(smiles, str) else None
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r} (not valid SMILES syntax)")
    try:
        Chem.SanitizeMol(mol)
    except Chem.MolSanitizeException as error:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}: {error}") from None
    maps = [atom.GetAtomMapNum() for atom in mol.GetAtoms()]
    if any(maps):
        if sorted(maps) != list(range(1, len(maps) + 1)):
            raise ValueError(
                f"the atom-map numbers of {smiles!r} must number all {len(maps)} atoms 1..{len(maps)} "
                f"once each (they give the atom order), got {maps}; remove them or use mapped_smiles"
            )
        mol = Chem.RenumberAtoms(mol, sorted(range(len(maps)), key=maps.__getitem__))
        for atom in mol.GetAtoms():
            atom.SetAtomMapNum(0)
    return Chem.AddHs(mol)


def mapped_smiles(mol) -> str:
    """A SMILES of ``mol`` whose atom-map numbers are the 1-based atom positions.

    Hydrogen atoms of ``mol`` are written as atoms (``[H:7]``), so
    ``mol_from_smiles(mapped_smiles(mol))`` has the atoms of ``mol`` in the same order,
    independently of RDKit's canonical ordering. Stereo marks are kept.
    """
    from rdkit import Chem

    mol = Chem.Mol(mol)
    for atom in mol.GetAtoms():
        atom.SetAtomMapNum(atom.GetIdx() + 1)
    return Chem.MolToSmiles(mol)


def graph_key(smiles: str) -> str:
    """The molecule of ``smiles`` as RDKit's canonical SMILES without stereochemistry or atom maps:
    one string per molecular graph, to tell whether two SMILES are the same molecule.

    Example:
        >>> graph_key("O/C=C\\C=O") == graph_key("[O:1]([H:6])[CH:2]=[CH:3][CH:4]=[O:5]") == "O=CC=CO"
        True
    """
    from rdkit import Chem

    mol = Chem.RemoveHs(mol_from_smiles(smiles))
    Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol)


def bond_graph(mol) -> tuple[np.ndarray, np.ndarray]:
    """The bonds of ``mol`` as a directed graph.

    Returns:
        ``edge_index`` int64 [2, 2 * n_bonds], both directions of every bond (bond k is columns
        2k, i -> j, and 2k + 1, j -> i), and ``bond_type`` int64 [2 * n_bonds] with the codes of
        :data:`BOND_TYPES` (1 single, 2 double, 3 triple, 4 aromatic).

    Raises:
        ValueError: a bond of another type (dative, quadruple, ...).
    """
    pairs, types = [], []
    for bond in mol.GetBonds():
        name = str(bond.GetBondType())
        if name not in BOND_TYPES:
            raise ValueError(f"bond {bond.GetBeginAtomIdx()}-{bond.GetEndAtomIdx()} is {name}; "
                             f"bond_graph knows {list(BOND_TYPES)} only")
        i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        pairs += [(i, j), (j, i)]
        types += [BOND_TYPES[name]] * 2
    edge_index = np.array(pairs, dtype=np.int64).reshape(-1, 2).T.copy()
    return edge_index, np.array(types, dtype=np.int64)


def formal_charge(mol) -> int:
    """The total formal charge of ``mol`` (0 for zwitterions)."""
    from rdkit import Chem

    return int(Chem.GetFormalCharge(mol))


def match_to_smiles(atoms, smiles: str):
    """A copy of the 3D structure ``atoms`` in the atom order of :func:`mol_from_smiles` of ``smiles``.

    The bonds of ``atoms`` (from distances, see the module notes) are matched against those of
    the SMILES, element by element and hydrogens included. Symmetry-equivalent atoms (the
    hydrogens of a methyl group, ...) are mapped in one of the equivalent ways. Per-atom arrays
    and ``info`` are copied with the positions, the calculator is not.

    Raises:
        ValueError: the SMILES cannot be parsed, the elements differ, or the bonds of the
            structure differ from those of the SMILES (a geometry whose connectivity changed).
    """
    mol = mol_from_smiles(smiles)
    formula, expected = atoms.get_chemical_formula(), _formula(mol)
    if formula != expected:
        raise ValueError(f"the structure is {formula} but the SMILES {smiles!r} is {expected}")
    pairs, longest = _closest_pairs(atoms, mol.GetNumBonds())
    match = ()
    if longest <= MAX_BOND_RATIO:  # same atoms, same number of bonds: a substructure match is an isomorphism
        match = _skeleton(atoms.numbers, pairs).GetSubstructMatch(_skeleton(_elements(mol), _bond_set(mol)))
    if not match:
        raise ValueError(
            f"the bonds of the {formula} structure do not match the SMILES {smiles!r}: its "
            f"{mol.GetNumBonds()} closest atom pairs (the longest {longest:.2f} times the covalent radii, "
            f"at most {MAX_BOND_RATIO} for a bond) do not form the graph of the SMILES; its connectivity "
            "differs (bonds broken, formed or rearranged)"
        )
    return atoms[list(match)]


def same_connectivity(atoms, smiles: str) -> bool:
    """Whether the bonds of ``atoms`` (from distances, see the module notes) are those of ``smiles``, atom by atom.

    ``atoms`` must be in the atom order of :func:`mol_from_smiles` of ``smiles`` (e.g. a frame
    and its ``info["smiles"]`` from :func:`mapped_smiles`); unlike :func:`match_to_smiles`, no
    reordering is tried, so a hydrogen that moved to a symmetry-equivalent atom counts as a change.

    Raises:
        ValueError: the SMILES cannot be parsed, or its elements are not those of ``atoms`` in order.
    """
    mol = mol_from_smiles(smiles)
    if _elements(mol) != atoms.numbers.tolist():
        raise ValueError(f"the atoms of the {atoms.get_chemical_formula()} structure are not in the atom "
                         f"order of the SMILES {smiles!r}; reorder them with match_to_smiles")
    pairs, longest = _closest_pairs(atoms, mol.GetNumBonds())
    return longest <= MAX_BOND_RATIO and pairs == _bond_set(mol)


# --- helpers ----------------------------------------------------------------------------------


def _elements(mol) -> list[int]:
    return [atom.GetAtomicNum() for atom in mol.GetAtoms()]


def _formula(mol) -> str:
    """The Hill formula of ``mol`` as ASE writes it (``Atoms.get_chemical_formula``)."""
    from ase import Atoms

    return Atoms(numbers=_elements(mol)).get_chemical_formula()


def _closest_pairs(atoms, n_bonds: int) -> tuple[set[frozenset[int]], float]:
    """The ``n_bonds`` atom pairs of ``atoms`` closest relative to their covalent radii, and the largest such ratio."""
    from rdkit import Chem

    if n_bonds == 0:
        return set(), 0.0
    table = Chem.GetPeriodicTable()
    radii = np.array([table.GetRcovalent(int(z)) for z in atoms.numbers])
    i, j = np.triu_indices(len(atoms), 1)
    ratio = np.linalg.norm(atoms.positions[i] - atoms.positions[j], axis=1) / (radii[i] + radii[j])
    closest = np.argsort(ratio, kind="stable")[:n_bonds]
    return {frozenset((int(i[k]), int(j[k]))) for k in closest}, float(ratio[closest[-1]])


def _skeleton(numbers, bonds):
    """A bare RDKit graph: elements and single bonds (no charges, orders or aromaticity), for matching."""
    from rdkit import Chem

    graph = Chem.RWMol()
    for z in numbers:
        graph.AddAtom(Chem.Atom(int(z)))
    for bond in bonds:
        graph.AddBond(*sorted(bond), Chem.BondType.SINGLE)
    graph = graph.GetMol()
    graph.UpdatePropertyCache(strict=False)
    return graph


def _bond_set(mol) -> set[frozenset[int]]:
    return {frozenset((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())) for bond in mol.GetBonds()}
