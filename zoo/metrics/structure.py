"""Structure metrics: RMSD after optimal superposition (Kabsch), and its symmetry-aware variant.

- :func:`kabsch_align` / :func:`kabsch_rmsd`: batched, in torch, for structures whose atoms are in
  the same order (a generated structure and its reference, both in SMILES order);
  :func:`aligned_rmsd` for one pair of arrays or :class:`ase.Atoms`. Only proper rotations are
  allowed: a mirror image is a different structure (chirality), not a match.
- :func:`best_rmsd`: RDKit's ``GetBestRMS``, the smallest RMSD over every renumbering of the
  atoms that maps the molecular graph onto itself (the hydrogens of a methyl group, the two
  oxygens of a carboxylate, ...), so that a prediction is not penalised for putting equivalent
  atoms in each other's places.

Positions are in Å; RMSDs too.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.utils import scatter


def kabsch_align(mobile: torch.Tensor, reference: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
    """``mobile`` [n_atoms, 3] rotated and translated onto ``reference`` (same atom order).

    Each structure (``batch`` index of each atom, all one structure if omitted) is centred on its
    centroid and rotated by the proper rotation that minimises the squared deviations (Kabsch),
    then moved to the reference's centroid.
    """
    if mobile.shape != reference.shape or mobile.dim() != 2 or mobile.shape[-1] != 3:
        raise ValueError(f"need two [n_atoms, 3] position arrays of the same shape, got {tuple(mobile.shape)} "
                         f"and {tuple(reference.shape)}")
    if batch is None:
        batch = torch.zeros(mobile.shape[0], dtype=torch.long, device=mobile.device)
    n = int(batch.max()) + 1 if batch.numel() else 0
    mobile_centre = scatter(mobile, batch, dim=0, dim_size=n, reduce="mean")
    reference_centre = scatter(reference, batch, dim=0, dim_size=n, reduce="mean")
    p = mobile - mobile_centre[batch]
    q = reference - reference_centre[batch]
    covariance = scatter(p.unsqueeze(-1) * q.unsqueeze(-2), batch, dim=0, dim_size=n)  # sum of p q^T
    u, _, vh = torch.linalg.svd(covariance)
    # the rotation R = V diag(1, 1, d) U^T with d = det(V U^T) keeps it proper
    d = torch.sign(torch.linalg.det(vh.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    diagonal = torch.ones(n, 3, dtype=mobile.dtype, device=mobile.device)
    diagonal[:, 2] = d
    rotation = vh.transpose(-1, -2) @ torch.diag_embed(diagonal) @ u.transpose(-1, -2)
    return torch.einsum("nij,nj->ni", rotation[batch], p) + reference_centre[batch]


def kabsch_rmsd(positions: torch.Tensor, reference: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
    """RMSD (Å) of each structure after optimal superposition onto its reference, [n_structures].

    The atoms must be in the same order in both (use :func:`best_rmsd` to also allow
    symmetry-equivalent atoms to swap places).
    """
    if batch is None:
        batch = torch.zeros(positions.shape[0], dtype=torch.long, device=positions.device)
    aligned = kabsch_align(positions, reference, batch)
    n = int(batch.max()) + 1 if batch.numel() else 0
    return scatter((aligned - reference).square().sum(-1), batch, dim=0, dim_size=n, reduce="mean").sqrt()


def aligned_rmsd(positions, reference) -> float:
    """RMSD (Å) of one structure after optimal superposition onto a reference with its atoms in the
    same order: :func:`kabsch_rmsd` for [n_atoms, 3] arrays or :class:`ase.Atoms`."""
    pair = [torch.as_tensor(np.asarray(getattr(x, "positions", x), dtype=np.float64)) for x in (positions, reference)]
    return float(kabsch_rmsd(*pair)[0])


def best_rmsd(positions, reference, molecule, max_matches: int = 100_000) -> float:
    """The smallest RMSD (Å) after superposition over the graph symmetries of ``molecule``.

    Args:
        positions: the structure to compare ([n_atoms, 3] array or :class:`ase.Atoms`).
        reference: the reference structure, in the same atom order.
        molecule: the molecular graph the atoms follow: an RDKit molecule with explicit
            hydrogens, or a SMILES (mapped, as :func:`zoo.data.molgraph.mapped_smiles` writes it,
            so that its atom order is the structures').
        max_matches: at most this many graph symmetries are tried (RDKit's ``maxMatches``).

    Raises:
        ValueError: the structures do not have the molecule's number of atoms, or their elements
            (for :class:`ase.Atoms`) are not the molecule's in order.
    """
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign
    from rdkit.Geometry import Point3D

    mol = molecule
    if isinstance(molecule, str):
        from zoo.data.molgraph import mol_from_smiles

        mol = mol_from_smiles(molecule)
    elements = [atom.GetAtomicNum() for atom in mol.GetAtoms()]
    copies = []
    for name, structure in (("positions", positions), ("reference", reference)):
        if hasattr(structure, "numbers") and structure.numbers.tolist() != elements:
            raise ValueError(f"the {name} structure's elements are not those of the molecule in its atom order")
        xyz = np.asarray(getattr(structure, "positions", structure), dtype=np.float64)
        if xyz.shape != (len(elements), 3):
            raise ValueError(f"{name} have shape {xyz.shape}, but the molecule has {len(elements)} atoms")
        copy = Chem.Mol(mol)
        copy.RemoveAllConformers()
        conformer = Chem.Conformer(len(elements))
        for i, (x, y, z) in enumerate(xyz):
            conformer.SetAtomPosition(i, Point3D(float(x), float(y), float(z)))
        copy.AddConformer(conformer, assignId=True)
        copies.append(copy)
    return float(rdMolAlign.GetBestRMS(copies[0], copies[1], maxMatches=max_matches))
