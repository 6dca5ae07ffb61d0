"""MD17 and revised MD17 (rMD17) trajectories from their ``.npz`` files.

- rMD17 (Christensen & von Lilienfeld 2020): keys ``nuclear_charges`` [n_atoms], ``coords``
  [n_frames, n_atoms, 3] Å, ``energies`` [n_frames] kcal/mol, ``forces`` [n_frames, n_atoms, 3]
  kcal/mol/Å.
- original MD17 (Chmiela et al. 2017, sGDML files): ``z``, ``R``, ``E`` ([n_frames, 1]), ``F``,
  in the same units.

Both are converted to eV and eV/Å on entry (1 kcal/mol = 0.0433641 eV).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from zoo.data import keys
from zoo.data._atomic_data import AtomicData
from zoo.data.dataset import AtomicDataset, resolve_dtype
from zoo.data.readers._common import existing_file, normalize_indices
from zoo.data.units import energy_to_ev

#: File keys of each variant, in the order (atomic numbers, positions, energies, forces).
MD17_LAYOUTS = {
    "rmd17": ("nuclear_charges", "coords", "energies", "forces"),
    "md17": ("z", "R", "E", "F"),
}


def read_md17(
    path: str | os.PathLike,
    indices: Sequence[int] | None = None,
    units: str = "kcal/mol",
    dtype=None,
) -> AtomicDataset:
    """Read an MD17 or rMD17 ``.npz`` file; the variant is recognised from its keys.

    Args:
        path: the ``.npz`` file.
        indices: frames to read (0-based), in the order given; default all.
        units: energy unit of the file, ``"kcal/mol"`` (both published datasets) or e.g.
            ``"eV"`` for files already converted; forces are taken to be in that unit per Å.
        dtype: floating dtype (default: torch's default).

    Returns:
        An :class:`AtomicDataset` with :data:`keys.ENERGY` (eV) and :data:`keys.FORCES` (eV/Å).

    Raises:
        ValueError: the file has neither layout (the keys expected for both and those found
            are named), inconsistent shapes, an unknown unit, pickled object arrays, or a frame
            with NaN or inf values or unknown elements (the frame and key are named).
    """
    factor = energy_to_ev(units)
    dtype = resolve_dtype(dtype)
    path = existing_file(path, "MD17/rMD17 .npz")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as error:  # a corrupt archive or another format entirely
        raise ValueError(f"cannot open {path} as an .npz archive ({error}); expected an MD17/rMD17 .npz") from error
    with archive:
        found = sorted(archive.files)
        variant = next((v for v, names in MD17_LAYOUTS.items() if set(names) <= set(found)), None)
        if variant is None:
            expected = "; ".join(f"{v}: {list(names)}" for v, names in MD17_LAYOUTS.items())
            raise ValueError(f"{path} is not an MD17/rMD17 file: expected the keys of {expected}; found {found}")
        z_key, r_key, e_key, f_key = MD17_LAYOUTS[variant]
        try:
            z, positions, energies, forces = (np.asarray(archive[name]) for name in (z_key, r_key, e_key, f_key))
        except ValueError as error:  # numpy refuses object arrays: unpickling them could run any code
            raise ValueError(f"{path}: cannot load its arrays ({error}); zoo reads only numeric arrays, "
                             "never pickled objects: save the file again with numeric arrays (np.savez)") from error
    arrays = {r_key: positions, e_key: energies, f_key: forces}
    not_numeric = [name for name, array in arrays.items() if array.dtype.kind not in "iuf"]
    if not_numeric:
        raise ValueError(f"{path}: {not_numeric} are not numeric arrays; expected numbers (Å, and `units`)")
    z = z.reshape(-1)
    n_frames = len(positions) if positions.ndim else 0
    if (positions.shape != (n_frames, z.size, 3) or forces.shape != positions.shape
            or energies.shape not in ((n_frames,), (n_frames, 1))):
        raise ValueError(
            f"{path}: inconsistent shapes: {z_key} {z.shape}, {r_key} {positions.shape}, "
            f"{e_key} {energies.shape}, {f_key} {forces.shape}; expected [n_atoms], [n_frames, n_atoms, 3], "
            "[n_frames] or [n_frames, 1], [n_frames, n_atoms, 3]"
        )
    energies = energies.reshape(n_frames)
    frames = normalize_indices(indices, n_frames, str(path))
    frames = range(n_frames) if frames is None else frames.tolist()
    data = []
    for i in frames:
        try:
            data.append(AtomicData.from_arrays(
                z, positions[i], dtype=dtype, **{keys.ENERGY: energies[i] * factor, keys.FORCES: forces[i] * factor}))
        except ValueError as error:
            raise ValueError(f"{path}: frame {i}: {error}") from error
    return AtomicDataset(data, metadata={"source": str(path), "format": variant, "file_units": units,
                                         "units": {keys.ENERGY: "eV", keys.FORCES: "eV/Å"}})
