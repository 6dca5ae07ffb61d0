"""One structure as a graph: a :class:`torch_geometric.data.Data` with canonical keys."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch_geometric.data import Data

from zoo.data import keys
from zoo.data.elements import as_atomic_numbers
from zoo.data.neighbors import check_interatomic_distances


def require_finite(name: str, values) -> None:
    """Raise ``ValueError`` when ``values`` hold NaN or inf, naming ``name``, how many and where
    the first is: a label or position that is not a number trains a model on garbage.

    The one check of every reader (through :meth:`AtomicData.from_arrays`) and writer; integer
    and boolean values pass.
    """
    tensor = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if not tensor.is_floating_point():
        return
    bad = ~torch.isfinite(tensor.detach())
    if bad.any():
        first = bad.nonzero()[0].tolist()
        where = f", the first at index {first}" if first else ""
        raise ValueError(f"{name} holds {int(bad.sum())} NaN or inf value(s) of {tensor.numel()}{where}; "
                         f"drop this structure or recompute its {name}")


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
        check_distances: bool = False,
        **properties,
    ) -> "AtomicData":
        """Create from atomic numbers [n], positions [n, 3] (Å) and optional properties.

        Properties named in :data:`zoo.data.keys.PER_STRUCTURE` are reshaped to ``[1, ...]``.
        Floating-point values take ``dtype`` (default: torch's default dtype).

        The inputs are checked, so that no reader or caller builds a structure that would train
        or predict on garbage: the atomic numbers must be elements (whole numbers), positions,
        cell and floating-point properties finite (:func:`require_finite`), and properties of
        a known shape must have it (forces [n_atoms, 3], one energy, AO matrices of ``n_ao``
        squared entries, ...).

        Args:
            check_distances: also refuse two atoms closer than
                :data:`~zoo.data.neighbors.MIN_INTERATOMIC_DISTANCE`
                (:func:`~zoo.data.neighbors.check_interatomic_distances`), as for structures a
                user gives. Off by default: models build structures from placeholder or noisy
                positions (diffusion sampling starts with every atom at the origin).

        Raises:
            ValueError: naming the input (or property key) that is wrong, and how.
        """
        dtype = dtype or torch.get_default_dtype()
        z = as_atomic_numbers(atomic_numbers)
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64), dtype=dtype)
        if pos.shape != (z.numel(), 3):
            raise ValueError(
                f"positions have shape {tuple(pos.shape)} but there are {z.numel()} atoms; "
                "expected [n_atoms, 3] in Å"
            )
        require_finite("positions", pos)
        data = cls(z=z, pos=pos, n_atoms=torch.tensor([z.numel()]))
        if cell is not None or pbc is not None:
            cell_t = torch.zeros(3, 3, dtype=dtype) if cell is None else torch.as_tensor(
                np.asarray(cell, dtype=np.float64), dtype=dtype).reshape(3, 3)
            require_finite("cell", cell_t)
            pbc_t = torch.as_tensor(np.broadcast_to(np.asarray(
                False if pbc is None else pbc, dtype=bool), (3,)).copy())
            if pbc_t.any() and torch.linalg.det(cell_t[pbc_t][:, pbc_t]).abs() < 1e-8:
                raise ValueError("periodic directions need a non-degenerate cell")
            data[keys.CELL] = cell_t.unsqueeze(0)
            data[keys.PBC] = pbc_t.unsqueeze(0)
        n_ao = properties.get(keys.N_AO)
        n_ao = int(np.asarray(n_ao).item()) if n_ao is not None and np.size(n_ao) == 1 else None
        for key, value in properties.items():
            if value is None:
                continue
            array = np.asarray(value)
            if array.dtype.kind not in "biuf":
                raise ValueError(f"{key} is not numeric (dtype {array.dtype}); store numbers, or keep text "
                                 "as a plain attribute after building the structure")
            tensor = torch.as_tensor(array)
            _check_shape(key, tensor, z.numel(), n_ao)
            require_finite(key, tensor)
            data[key] = _as_property(key, tensor, dtype)
        if check_distances:
            check_interatomic_distances(data)
        return data

    @classmethod
    def from_ase(cls, atoms, properties: Mapping | None = None, dtype=None,
                 check_distances: bool = True) -> "AtomicData":
        """Create from :class:`ase.Atoms`; ``properties`` (canonical keys) are added as given.

        Atoms are how users hand structures over (files, the ASE calculator), so by default two
        atoms closer than :data:`~zoo.data.neighbors.MIN_INTERATOMIC_DISTANCE` are an error
        naming them (see :meth:`from_arrays`).
        """
        periodic = bool(np.any(atoms.pbc))
        return cls.from_arrays(
            atoms.numbers,
            atoms.positions,
            cell=np.asarray(atoms.cell) if periodic else None,
            pbc=atoms.pbc if periodic else None,
            dtype=dtype,
            check_distances=check_distances,
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


#: Exact shapes of properties as given, for ``n`` atoms; other per-structure values are one number.
_SHAPES = {keys.FORCES: lambda n: (n, 3), keys.DIPOLE: lambda n: (3,), keys.STRESS: lambda n: (3, 3)}


def _check_shape(key: str, tensor: torch.Tensor, n_atoms: int, n_ao: int | None) -> None:
    shape = tuple(tensor.shape)
    if key in _SHAPES:
        expected = _SHAPES[key](n_atoms)
        fits = shape == expected
    elif key in keys.PER_ATOM:
        expected = f"({n_atoms}, ...), one row per atom"
        fits = shape[:1] == (n_atoms,)
    elif key in keys.PER_STRUCTURE:
        expected = "one number"
        fits = tensor.numel() == 1
    elif key in keys.AO_MATRICES and n_ao is not None:
        expected = f"({n_ao}, {n_ao}) or flattened, for n_ao = {n_ao}"
        fits = tensor.numel() == n_ao * n_ao
    elif key == keys.ORBITAL_ENERGIES and n_ao is not None:
        expected = (n_ao,)
        fits = shape == expected
    else:
        return
    if not fits:
        raise ValueError(f"{key} has shape {shape}, expected {expected}")


def _as_property(key: str, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if tensor.is_floating_point():
        tensor = tensor.to(dtype)
    if key in keys.AO_MATRICES:
        return tensor.reshape(-1)
    if key in keys.PER_STRUCTURE:
        return tensor.reshape(1, *tensor.shape) if tensor.dim() > 0 else tensor.reshape(1)
    return tensor
