"""The consistency model's side that faces users: molecules in, ASE structures out.

:class:`MolecularInterface` is the inference half of :class:`~zoo.models.ConsistencyModel` (which
mixes it in): it checks a molecule (a SMILES or an RDKit molecule) against what the model supports,
builds the model's input on the molecule's graph, generates structures of a molecule
(:meth:`~MolecularInterface.generate`) and scores ASE structures with the energy model
(:meth:`~MolecularInterface.predict`, :meth:`~MolecularInterface.energy`, the ASE calculator), each
structure read on its SMILES.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from zoo.data import keys
from zoo.data.elements import SYMBOLS
from zoo.data.transforms import MolecularGraph
from zoo.models._domain import ExtrapolationWarning
from zoo.models._inference import BATCH_SIZE, Predictor, StructureGenerator, StructureInput, predict_structures


class MolecularInterface(Predictor, StructureGenerator):
    """:meth:`generate`, :meth:`predict` and :meth:`energy` of a model of molecular graphs, whose
    ``elements``, ``max_atoms``, ``domain``, ``generate_positions`` and forward (the energy model,
    ``{"energy", "forces"}``) are those of :class:`~zoo.models.ConsistencyModel`."""

    def check_molecule(self, molecule):
        """An RDKit molecule (explicit hydrogens) from a SMILES or a molecule, checked against what
        the model supports.

        Raises:
            ValueError: RDKit cannot parse the SMILES, or the molecule has elements the model was
                not trained on, is several molecules (fragments), is charged or a radical, or has
                more than ``max_atoms`` atoms.
        """
        from rdkit import Chem

        from zoo.data.molgraph import formal_charge, mol_from_smiles

        if isinstance(molecule, str):
            try:
                mol = mol_from_smiles(molecule)
            except ValueError as error:
                raise ValueError(f"{error}; give a valid SMILES of a neutral molecule, e.g. 'CCO'") from None
        elif isinstance(molecule, Chem.Mol):
            mol = Chem.AddHs(molecule)
        else:
            raise TypeError(f"expected a SMILES string or an RDKit molecule, got {type(molecule).__name__}")
        name = molecule if isinstance(molecule, str) else Chem.MolToSmiles(Chem.RemoveHs(mol))
        # unknown elements first: RDKit calls a lone metal atom such as [Au] a radical
        unknown = sorted({SYMBOLS[a.GetAtomicNum()] for a in mol.GetAtoms()} - set(self.elements))
        if unknown:
            which = (f"element {unknown[0]} is not one" if len(unknown) == 1
                     else f"elements {', '.join(unknown)} are not ones")
            raise ValueError(f"{name!r}: {which} the model was trained on ({', '.join(self.elements)}); "
                             "use a model trained on such molecules")
        fragments = Chem.GetMolFrags(mol, asMols=True)
        if len(fragments) > 1:
            names = ", ".join(repr(Chem.MolToSmiles(Chem.RemoveHs(f))) for f in fragments)
            raise ValueError(f"{name!r}: one molecule per SMILES; got {len(fragments)} fragments ({names}): "
                             "give each molecule on its own")
        charge = formal_charge(mol)
        if charge:
            raise ValueError(f"{name!r} has a total formal charge of {charge:+d}; this model supports neutral "
                             "molecules only: give the neutral species")
        if any(atom.GetNumRadicalElectrons() for atom in mol.GetAtoms()):
            raise ValueError(f"{name!r} is a radical; this model supports closed-shell molecules only: "
                             "add the missing hydrogens")
        if mol.GetNumAtoms() > self.max_atoms:
            raise ValueError(f"{name!r} has {mol.GetNumAtoms()} atoms with hydrogens, more than this model "
                             f"supports (max_atoms={self.max_atoms}); it was trained on smaller molecules")
        return mol

    def generate(self, molecule, k: int = 1, mode: str | None = None, steps: int = 50, start: float | None = None,
                 seed: int | None = None, check: bool = True) -> list:
        """``k`` equilibrium structures of a molecule as :class:`ase.Atoms`.

        The atoms are in the order of the SMILES (:func:`zoo.data.molgraph.mol_from_smiles`: the
        written atoms, then their hydrogens), and each structure's ``info["smiles"]`` is the mapped
        SMILES of that order, so :meth:`energy` and :func:`zoo.metrics.best_rmsd` take it as is.
        Warns (:class:`~zoo.models.ExtrapolationWarning`) for a molecule far larger than the
        training molecules.

        Each structure is checked against the molecular graph (:func:`zoo.data.validity.structure_validity`:
        bond lengths within 0.75-1.25x the covalent radii sum, no steric clash): ``info["valid"]``
        says whether it passed, and an :class:`~zoo.data.validity.InvalidStructureWarning` names
        the worst defect of the invalid ones.

        Args:
            molecule: a SMILES or an RDKit molecule.
            k: number of structures (independent noise, and conformers in one-shot mode).
            mode, steps, start, seed: see :meth:`generate_positions`.
            check: check the structures' validity (``False``: no check, no ``info["valid"]``).

        Raises:
            ValueError: for a molecule the model does not support (see :meth:`check_molecule`).
        """
        from ase import Atoms
        from torch_geometric.data import Batch

        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        mol = self.check_molecule(molecule)
        data = self.graph_data(mol)
        self.domain.check(data, geometry=False)  # the positions are placeholders
        batch = Batch.from_data_list([data] * k)
        with torch.no_grad():
            positions = self.generate_positions(batch, mode, steps, start, seed).double().cpu().numpy()
        numbers, n = data[keys.ATOMIC_NUMBERS].tolist(), data[keys.POSITIONS].shape[0]
        structures = [Atoms(numbers=numbers, positions=positions[i * n:(i + 1) * n],
                            info={"smiles": data[keys.SMILES]}) for i in range(k)]
        if check:
            _check_validity(structures, mol, molecule if isinstance(molecule, str) else data[keys.SMILES])
        return structures

    def predict(self, structures, batch_size: int = BATCH_SIZE, smiles: str | Sequence[str] | None = None,
                check_distances: bool = True):
        """The energy model's energy (eV) and forces (eV/Å) of ASE structures, ``batch_size`` per
        forward pass: ``{"energy": float, "forces": [n_atoms, 3] array}`` per structure.

        Each structure is read on its molecular graph, a SMILES. Its atoms are matched to the
        SMILES by the bonds of the geometry (its closest atom pairs,
        :func:`zoo.data.molgraph.match_to_smiles`): atoms in another order than the SMILES's are
        reordered for the model, and the forces come back in the order of the structure's atoms.
        Warns (:class:`~zoo.models.ExtrapolationWarning`) for structures outside the training domain.

        Args:
            structures: an :class:`ase.Atoms` or a list of them.
            batch_size: structures per forward pass.
            smiles: the molecular graph, a SMILES (with atom-map numbers, or in the order of
                :func:`zoo.data.molgraph.mol_from_smiles`), for every structure, or one per
                structure; default each structure's ``info["smiles"]`` (as :meth:`generate` and
                the data files set it).
            check_distances: check each geometry against its graph: refuse atoms closer than any
                chemical bond, match the atoms to the SMILES by their bonds (a structure whose
                bonds form the graph in no order is an error, or a warning if its elements are
                in the order of the SMILES). False takes the atoms as they are, in the order of
                the SMILES, to score a generated structure whatever it is.

        Returns:
            A dict for one structure, a list of dicts for a list.
        """
        if smiles is not None:
            structures = _with_smiles(structures, smiles)
        prepare = functools.partial(self.structure_input, check_distances=check_distances)
        return predict_structures(self, structures, batch_size, prepare=prepare)

    def structure_input(self, atoms, check_distances: bool = True) -> StructureInput:
        """The structure on its molecular graph (``atoms.info["smiles"]``), its atoms in the order
        of the SMILES; the context is that order (see :meth:`predict`)."""
        smiles = atoms.info.get("smiles")
        if not smiles:
            raise ValueError("the energy model needs the molecular graph: pass smiles= (with atom-map numbers in "
                             "the order of the atoms), or set atoms.info['smiles'] (generate() does)")
        mol = self.check_molecule(smiles)
        order = np.arange(len(atoms))
        if check_distances:
            from zoo.data import AtomicData

            AtomicData.from_ase(atoms)  # atoms on top of each other: an error naming them, before matching bonds
            order = _smiles_order(atoms, smiles)
        return StructureInput(self.graph_data(mol, atoms.positions[order], atoms.numbers[order]), order)

    def structure_results(self, outputs, batch, inputs) -> list[dict]:
        """Energy and forces per structure, the forces in the order of the structure's atoms."""
        results = super().structure_results(outputs, batch, inputs)
        for result, item in zip(results, inputs):
            forces = np.empty_like(result[keys.FORCES])
            forces[item.context] = result[keys.FORCES]
            result[keys.FORCES] = forces
        return results

    def energy(self, atoms, smiles: str | None = None, forces: bool = False, check_distances: bool = True):
        """The energy model's energy (eV) of one ASE structure, and its forces (eV/Å) if asked: :meth:`predict`
        of one structure (whose arguments these are) as a float, or ``(energy, forces [n_atoms, 3] array)``."""
        result = self.predict(atoms, smiles=smiles, check_distances=check_distances)
        return (result[keys.ENERGY], result[keys.FORCES]) if forces else result[keys.ENERGY]

    def graph_data(self, molecule, positions=None, atomic_numbers: Sequence[int] | None = None):
        """The model's input for one molecule: an AtomicData at ``positions`` (Å, default zeros:
        placeholders for generation) with its molecular graph, in the model's dtype and device.

        Args:
            molecule: a SMILES or an RDKit molecule, checked by :meth:`check_molecule`.
            positions: [n_atoms, 3] in the molecule's atom order.
            atomic_numbers: a structure's, which must be the molecule's in order.
        """
        from zoo.data import AtomicData
        from zoo.data.molgraph import mapped_smiles

        mol = self.check_molecule(molecule)
        positions = np.zeros((mol.GetNumAtoms(), 3)) if positions is None else positions
        numbers = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
        parameter = next(self.parameters())
        data = AtomicData.from_arrays(numbers, positions, dtype=parameter.dtype, check_distances=False)
        data[keys.SMILES] = mapped_smiles(mol)
        if atomic_numbers is not None and [int(z) for z in atomic_numbers] != numbers:
            raise ValueError("the atoms are not those of the SMILES in order: write the SMILES with atom-map "
                             "numbers in the order of the atoms (zoo.data.molgraph.mapped_smiles), or reorder "
                             "the atoms (zoo.data.molgraph.match_to_smiles)")
        return MolecularGraph()(data).to(parameter.device)


def _with_smiles(structures, smiles: str | Sequence[str]) -> list | object:
    """Copies of ``structures`` (one ``ase.Atoms`` or a list) with ``info["smiles"]`` set: one SMILES
    for all, or one per structure."""
    from ase import Atoms

    single = isinstance(structures, Atoms)
    images = [structures] if single else list(structures)
    every = [smiles] * len(images) if isinstance(smiles, str) else list(smiles)
    if len(every) != len(images):
        raise ValueError(f"smiles= gives {len(every)} SMILES for {len(images)} structures: give one SMILES for all, "
                         "or one per structure")
    copies = []
    for atoms, graph in zip(images, every):
        if not isinstance(atoms, Atoms):
            raise TypeError(f"a consistency model scores ase.Atoms, not {type(atoms).__name__}")
        atoms = atoms.copy()
        atoms.info["smiles"] = graph
        copies.append(atoms)
    return copies[0] if single else copies


def _check_validity(structures: list, mol, name: str) -> None:
    """Mark each structure's ``info["valid"]``; warn about the invalid ones, naming the worst defect."""
    from zoo.data.validity import InvalidStructureWarning, structure_validity

    results = [structure_validity(atoms, mol) for atoms in structures]
    for atoms, result in zip(structures, results):
        atoms.info["valid"] = result.valid
    invalid = [i for i, result in enumerate(results) if not result.valid]
    if invalid:
        first = results[invalid[0]]
        warnings.warn(f"{len(invalid)} of {len(structures)} generated structures of {name!r} are not physical "
                      f"(structure {invalid[0]}: {first.describe(limit=1)}); info['valid'] marks them",
                      InvalidStructureWarning, stacklevel=3)


def _smiles_order(atoms, smiles: str) -> np.ndarray:
    """The indices of ``atoms`` in the atom order of ``smiles``, from the bonds of the geometry.

    Atoms whose bonds form the graph of the SMILES in the order given keep it; others are matched
    to the graph and reordered. A structure whose bonds form the graph in no order (stretched or
    broken bonds, as in a poorly generated structure) keeps its order if its elements are in the
    order of the SMILES, with an :class:`~zoo.models.ExtrapolationWarning`.

    Raises:
        ValueError: the elements differ, or they are in another order than the SMILES's and the
            bonds of the geometry form its graph in no order.
    """
    from ase import Atoms

    from zoo.data.molgraph import match_to_smiles, mol_from_smiles, same_connectivity

    elements = [atom.GetAtomicNum() for atom in mol_from_smiles(smiles).GetAtoms()]
    if sorted(elements) != sorted(atoms.numbers.tolist()):
        raise ValueError(f"the structure is {atoms.get_chemical_formula()} but the SMILES {smiles!r} is "
                         f"{Atoms(numbers=elements).get_chemical_formula()}: give the SMILES of this structure")
    in_order = elements == atoms.numbers.tolist()
    if in_order and same_connectivity(atoms, smiles):
        return np.arange(len(atoms))
    labelled = Atoms(numbers=atoms.numbers, positions=atoms.positions)
    labelled.set_array("index", np.arange(len(atoms)))  # per-atom arrays follow the reordering
    try:
        return match_to_smiles(labelled, smiles).get_array("index")
    except ValueError as error:
        if not in_order:
            raise ValueError(f"{error}; its atoms are not in the order of the SMILES either, so the structure "
                             "cannot be read on the SMILES's graph: give the SMILES of this structure") from None
        warnings.warn(f"{error}. Its atoms are taken in the order of the SMILES, as given, and its energy is "
                      "extrapolated; pass check_distances=False to score such structures without this check",
                      ExtrapolationWarning, stacklevel=3)
        return np.arange(len(atoms))


def etkdg_conformer(smiles: str, seed: int, relax: bool = False) -> np.ndarray:
    """An RDKit ETKDG conformer (Å, [n_atoms, 3]) of a SMILES, atoms in its order (mapped SMILES
    as :func:`zoo.data.molgraph.mol_from_smiles` reads them); reproducible for a seed.

    Args:
        smiles: the molecule.
        seed: ETKDG's random seed.
        relax: relax the conformer with MMFF94 (at most 2000 steps; UFF for a molecule MMFF has no
            parameters for), the field's usual cheap structure.
    """
    from rdkit.Chem import rdDistGeom, rdForceFieldHelpers

    from zoo.data.molgraph import mol_from_smiles

    mol = mol_from_smiles(smiles)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed) % (2**31)
    if rdDistGeom.EmbedMolecule(mol, params) < 0:
        params.useRandomCoords = True  # RDKit's advice for molecules that fail to embed
        if rdDistGeom.EmbedMolecule(mol, params) < 0:
            raise ValueError(f"RDKit cannot embed {smiles!r} in 3D to start from; a model that samples from noise generates it with mode='ddim'")
    if relax:
        if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
            rdForceFieldHelpers.MMFFOptimizeMolecule(mol, maxIters=2000)
        else:
            rdForceFieldHelpers.UFFOptimizeMolecule(mol, maxIters=2000)
    return mol.GetConformer().GetPositions()


#: ETKDG+MMFF94 conformers per molecule that refinement chooses its starting structures from
REFINE_POOL = 30


def diverse_conformers(smiles: str, k: int, seed: int, pool: int = REFINE_POOL) -> list[np.ndarray]:
    """``k`` MMFF94-relaxed ETKDG conformers (Å, [n_atoms, 3] each, atoms in the SMILES's order)
    chosen to differ: ``pool`` conformers are embedded and relaxed (UFF for a molecule MMFF has no
    parameters for), then picked by farthest-point sampling on their heavy-atom RMSD, from the
    lowest-energy one. Best-of-k structure metrics gain from the spread: on the held-out QM9
    molecules of ``benchmarks/consistency/`` the best of 5 such conformers is closer to QM9's
    geometry than the best of 5 independent ones. Reproducible for a seed.

    Raises:
        ValueError: RDKit cannot embed the molecule in 3D.
    """
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdDistGeom, rdForceFieldHelpers

    from zoo.data.molgraph import mol_from_smiles

    mol = mol_from_smiles(smiles)
    params = rdDistGeom.ETKDGv3()
    params.randomSeed = int(seed) % (2**31 - 1) + 1  # seed 0 makes RDKit embed one conformer over and over
    ids = list(rdDistGeom.EmbedMultipleConfs(mol, max(pool, k), params))
    if not ids:
        params.useRandomCoords = True
        ids = list(rdDistGeom.EmbedMultipleConfs(mol, max(pool, k), params))
    if not ids:
        raise ValueError(f"RDKit cannot embed {smiles!r} in 3D to start from; a model that samples from noise generates it with mode='ddim'")
    if rdForceFieldHelpers.MMFFHasAllMoleculeParams(mol):
        results = rdForceFieldHelpers.MMFFOptimizeMoleculeConfs(mol, maxIters=2000)
    else:
        results = rdForceFieldHelpers.UFFOptimizeMoleculeConfs(mol, maxIters=2000)
    energies = np.array([energy for _, energy in results])
    n = len(ids)
    distance = np.zeros((n, n))
    if n > 1:
        distance[np.tril_indices(n, -1)] = AllChem.GetConformerRMSMatrix(Chem.RemoveHs(mol), prealigned=False)
        distance += distance.T
    chosen = [int(np.argmin(energies))]
    while len(chosen) < k:
        chosen.append(int(np.argmax(distance[:, chosen].min(axis=1))))
    return [mol.GetConformer(ids[i]).GetPositions() for i in chosen]


def refinement_starts(smiles: list[str], seed: int, pool: int = REFINE_POOL) -> list[np.ndarray]:
    """Starting structures of refinement: each run of consecutive structures of one molecule gets
    that many diverse MMFF94 conformers of a pool (seeded by the run's first position)."""
    starts, first = [], 0
    for molecule, run in itertools.groupby(smiles):
        k = len(list(run))
        starts += diverse_conformers(molecule, k, seed + first, pool)
        first += k
    return starts
