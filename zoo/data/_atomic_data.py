"""One structure as a graph: a :class:`torch_geometric.data.Data` with canonical keys."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch_geometric.data import Data

from zoo.data import keys
from zoo.data.elements import check_atomic_numbers


class AtomicData(Data):
    """A molecule or periodic structure.

    Build it with :meth:`from_arrays` or :meth:`from_ase`. Per-structure properties get a leading
    dimension of 1 so that :class:`torch_geometric.data.Batch` stacks them into one row per
    structure; per-atom properties concatenate along atoms; ``edge_index`` is offset by PyG.
    """

    @classmethod
    def from_arrays(
        cls,
        atomic_numbers,
        positions,
        cell=None,
        pbc=None,
        dtype: torch.dtype | None = None,
        **properties,
    ) -> "AtomicData":
        """Create from atomic numbers [n], positions [n, 3] (Å) and optional properties.

        Properties named in :data:`zoo.data.keys.PER_STRUCTURE` are reshaped to ``[1, ...]``.
        Floating-point values take ``dtype`` (default: torch's default dtype).
        """
        dtype = dtype or torch.get_default_dtype()
        z = torch.as_tensor(np.asarray(atomic_numbers), dtype=torch.long).reshape(-1)
        check_atomic_numbers(z)
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64), dtype=dtype)
        if pos.shape != (z.numel(), 3):
            raise ValueError(
                f"positions have shape {tuple(pos.shape)} but there are {z.numel()} atoms; "
                "expected [n_atoms, 3] in Å"
            )
        if not torch.isfinite(pos).all():
            raise ValueError("positions contain NaN or inf")
        data = cls(z=z, pos=pos, n_atoms=torch.tensor([z.numel()]))
        if cell is not None or pbc is not None:
            cell_t = torch.zeros(3, 3, dtype=dtype) if cell is None else torch.as_tensor(
                np.asarray(cell, dtype=np.float64), dtype=dtype).reshape(3, 3)
            pbc_t = torch.as_tensor(np.broadcast_to(np.asarray(
                False if pbc is None else pbc, dtype=bool), (3,)).copy())
            if pbc_t.any() and torch.linalg.det(cell_t[pbc_t][:, pbc_t]).abs() < 1e-8:
                raise ValueError("periodic directions need a non-degenerate cell")
            data[keys.CELL] = cell_t.unsqueeze(0)
            data[keys.PBC] = pbc_t.unsqueeze(0)
        for key, value in properties.items():
            if value is None:
                continue
            data[key] = _as_property(key, value, dtype)
        return data

    @classmethod
    def from_ase(cls, atoms, properties: Mapping | None = None, dtype=None) -> "AtomicData":
        """Create from :class:`ase.Atoms`; ``properties`` (canonical keys) are added as given."""
        periodic = bool(np.any(atoms.pbc))
        return cls.from_arrays(
            atoms.numbers,
            atoms.positions,
            cell=np.asarray(atoms.cell) if periodic else None,
            pbc=atoms.pbc if periodic else None,
            dtype=dtype,
            **dict(properties or {}),
        )

    def to_ase(self):
        """The structure as :class:`ase.Atoms`: no properties attached, but the SMILES (atom-mapped
        in the atoms' order, see :mod:`zoo.data.molgraph`) in ``info["smiles"]`` when it has one,
        so the molecular graph travels with the atoms."""
        from ase import Atoms

        cell = self[keys.CELL][0].detach().cpu().numpy() if keys.CELL in self else None
        pbc = self[keys.PBC][0].cpu().numpy() if keys.PBC in self else False
        info = {"smiles": self[keys.SMILES]} if isinstance(self.get(keys.SMILES), str) else {}
        return Atoms(
            numbers=self[keys.ATOMIC_NUMBERS].cpu().numpy(),
            positions=self[keys.POSITIONS].detach().cpu().numpy(),
            cell=cell,
            pbc=pbc,
            info=info,
        )

    @property
    def is_periodic(self) -> bool:
        return keys.PBC in self and bool(self[keys.PBC].any())


def _as_property(key: str, value, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(value))
    if tensor.is_floating_point():
        tensor = tensor.to(dtype)
    if key in keys.AO_MATRICES:
        return tensor.reshape(-1)
    if key in keys.PER_STRUCTURE:
        return tensor.reshape(1, *tensor.shape) if tensor.dim() > 0 else tensor.reshape(1)
    return tensor
