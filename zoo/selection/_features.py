"""Per-structure feature vectors to select on: a model's last-layer features, or a descriptor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

DESCRIPTORS = ("coulomb", "inverse-distance")


def descriptor_features(structures: Sequence, kind: str = "coulomb") -> np.ndarray:
    """Rotation-, translation- and permutation-invariant descriptors that need no model.

    ``"coulomb"``: eigenvalues of the Coulomb matrix (``0.5 Z_i^2.4`` on the diagonal,
    ``Z_i Z_j / r_ij`` off it; Rupp et al. 2012), sorted by decreasing magnitude, [N, n_atoms_max].
    ``"inverse-distance"``: all ``1 / r_ij`` (Å⁻¹) sorted decreasingly, [N, n_pairs_max]: finer
    than the eigenvalues for conformers of one molecule. Smaller structures are zero-padded.

    Args:
        structures: :class:`ase.Atoms`.
        kind: one of :data:`DESCRIPTORS`.
    """
    if kind not in DESCRIPTORS:
        raise ValueError(f"unknown descriptor {kind!r}; choose from {DESCRIPTORS}")
    if not structures:
        raise ValueError("no structures to describe")
    rows = [_coulomb_eigenvalues(a) if kind == "coulomb" else _inverse_distances(a) for a in structures]
    out = np.zeros((len(rows), max(len(r) for r in rows)))
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def _pair_distances(atoms) -> np.ndarray:
    # periodic images are ignored: these descriptors are for molecules
    positions = np.asarray(atoms.positions, dtype=np.float64)
    return np.linalg.norm(positions[:, None] - positions[None], axis=-1)


def _coulomb_eigenvalues(atoms) -> np.ndarray:
    z = np.asarray(atoms.numbers, dtype=np.float64)
    r = _pair_distances(atoms)
    np.fill_diagonal(r, 1.0)  # placeholder; the diagonal is replaced below
    matrix = np.outer(z, z) / r
    np.fill_diagonal(matrix, 0.5 * z**2.4)
    eigenvalues = np.linalg.eigvalsh(matrix)
    return eigenvalues[np.argsort(-np.abs(eigenvalues))]


def _inverse_distances(atoms) -> np.ndarray:
    r = _pair_distances(atoms)[np.triu_indices(len(atoms), k=1)]
    return np.sort(1.0 / r)[::-1]


@torch.no_grad()
def model_features(model: torch.nn.Module, structures: Sequence, pooling: str = "mean",
                   batch_size: int = 32) -> np.ndarray:
    """The last-layer invariant features of a zoo model, pooled per structure.

    The backbone's even scalar (``0e``) node features, the slices a
    :class:`~zoo.models.PropertyModel` (or :class:`~zoo.models.ForceFieldModel`) reads out,
    averaged (``"mean"``) or summed (``"sum"``) over each structure's atoms: the inputs the
    readout is (nearly) linear in, hence the space in which D-optimality measures information.

    Args:
        model: a task (its ``.model`` is used) or a model with ``backbone`` and ``_scalar_slices``.
        structures: :class:`ase.Atoms`.
        pooling: ``"mean"`` or ``"sum"``.
        batch_size: structures per forward pass.

    Returns:
        Features [N, n_scalars].
    """
    from torch_geometric.data import Batch
    from torch_geometric.utils import scatter

    from zoo.data import AtomicData

    if pooling not in ("mean", "sum"):
        raise ValueError(f"pooling must be 'mean' or 'sum', got {pooling!r}")
    model = getattr(model, "model", model)
    if not hasattr(model, "backbone") or not hasattr(model, "_scalar_slices"):
        raise TypeError(f"{type(model).__name__} is not a PropertyModel-like model (backbone + scalar readout)")
    parameter = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for start in range(0, len(structures), batch_size):
            data = [AtomicData.from_ase(a, dtype=parameter.dtype) for a in structures[start:start + batch_size]]
            batch = Batch.from_data_list(data).to(parameter.device)
            nodes = model.backbone(batch).node_features
            scalars = torch.cat([nodes[:, s] for s in model._scalar_slices], dim=-1)
            chunks.append(scatter(scalars, batch.batch, dim=0, dim_size=len(data), reduce=pooling).cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks).double().numpy()
