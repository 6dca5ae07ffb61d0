"""QM9 from the CSV files of the ``qm9pack`` package (read offline, streamed).

QM9 (Ramakrishnan et al., Sci. Data 2014): 130,831 small organic molecules (H, C, N, O, F; up to
29 atoms) at B3LYP/6-31G(2df,p), with geometries in Å and 12+ properties. ``qm9pack`` ships them
as three CSV files; its ``__init__`` imports ``pkg_resources`` (gone from recent setuptools), so
the package is located with :func:`importlib.util.find_spec` and never imported.
"""

from __future__ import annotations

import csv
import importlib.util
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from zoo.data import keys
from zoo.data._atomic_data import AtomicData
from zoo.data.dataset import AtomicDataset, resolve_dtype
from zoo.data.elements import atomic_number
from zoo.data.readers._common import existing_file, normalize_indices
from zoo.data.units import HARTREE

#: The CSV files of ``qm9pack``, in the order their rows are numbered.
QM9PACK_FILES = ("qm9_part1.csv", "qm9_part2.csv", "qm9_part3.csv")

#: Columns of the ``qm9pack`` CSV files.
QM9_COLUMNS = (
    "XYZ_file", "Index", "SMILES", "InChi", "N_atoms", "Stoichiometry", "Elements", "XYZ_Ang",
    "Mulliken_pop", "Harmonic_Freq_cmi", "RotA_GHz", "RotB_GHz", "RotC_GHz", "Dipole_debye",
    "Polarizability_bohr3", "HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au", "R2_bohr2", "ZPVE_au",
    "InternalEnergy_0K_au", "InternalEnergy_298K_au", "Enthalphy_298K_au", "GibbsFreeEnergy_298K_au",
    "Heatcapacity_Cv_cal_mol_K",
)

#: The 12 standard QM9 targets: canonical key -> (CSV column, factor to zoo's unit, zoo's unit).
#: Energies are converted from Hartree to eV; the others keep QM9's units.
QM9_PROPERTIES: dict[str, tuple[str, float, str]] = {
    keys.MU: ("Dipole_debye", 1.0, "D"),
    keys.ALPHA: ("Polarizability_bohr3", 1.0, "bohr^3"),
    keys.HOMO: ("HOMO_au", HARTREE, "eV"),
    keys.LUMO: ("LUMO_au", HARTREE, "eV"),
    keys.GAP: ("HOMO_LUMO_gap_au", HARTREE, "eV"),
    keys.R2: ("R2_bohr2", 1.0, "bohr^2"),
    keys.ZPVE: ("ZPVE_au", HARTREE, "eV"),
    keys.U0: ("InternalEnergy_0K_au", HARTREE, "eV"),
    keys.U: ("InternalEnergy_298K_au", HARTREE, "eV"),
    keys.H: ("Enthalphy_298K_au", HARTREE, "eV"),  # sic: the column is spelled so in qm9pack
    keys.G: ("GibbsFreeEnergy_298K_au", HARTREE, "eV"),
    keys.CV: ("Heatcapacity_Cv_cal_mol_K", 1.0, "cal/mol/K"),
}

#: Columns every QM9 file must have, whatever the properties requested.
_STRUCTURE_COLUMNS = ("Index", "SMILES", "N_atoms", "Elements", "XYZ_Ang")


def qm9pack_files() -> list[Path]:
    """The CSV files shipped by the installed ``qm9pack`` package (without importing it)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "QM9 is read from the 'qm9pack' package, which is not installed; "
            "`pip install qm9pack` or pass path= to a CSV file in the same format"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = [folder / name for name in QM9PACK_FILES]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"the qm9pack package at {folder.parent} lacks its data files {missing}")
    return files


def read_qm9(
    path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    limit: int | None = None,
    indices: Sequence[int] | None = None,
    properties: Sequence[str] | None = None,
    dtype=None,
) -> AtomicDataset:
    """Read QM9 molecules with the 12 standard targets (units in :data:`QM9_PROPERTIES`).

    Rows are streamed with the :mod:`csv` module and reading stops as soon as the requested
    molecules are in, so the first few hundred molecules take milliseconds although the files
    hold 225 MB. Each structure carries the targets, ``smiles`` (:data:`keys.SMILES`) and the
    QM9 molecule number ``qm9_id`` (:data:`keys.QM9_ID`).

    Args:
        path: a CSV file (or several, read in order) in the ``qm9pack`` format; by default the
            files of the installed ``qm9pack`` package.
        limit: read at most the first ``limit`` molecules.
        indices: read these 0-based row positions (counting across the files in order), returned
            in the order given. Not the QM9 molecule number, which has gaps: see ``qm9_id``.
        properties: canonical keys of the targets to keep (default: all 12).
        dtype: floating dtype of positions and targets (default: torch's default).

    Returns:
        An :class:`AtomicDataset` whose metadata names the source files and the units.

    Raises:
        ValueError: a file lacks required columns (they are named), a row cannot be parsed, or
            an unknown property or element is requested or found.

    Example:
        >>> from zoo.data.readers import read_qm9
        >>> ds = read_qm9(limit=3)
        >>> ds[0].smiles, round(float(ds[0].U0), 3)  # methane, eV
        ('C', -1101.488)
    """
    if limit is not None and indices is not None:
        raise ValueError("pass either limit or indices to read_qm9, not both")
    if limit is not None and int(limit) < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    properties = list(QM9_PROPERTIES) if properties is None else list(properties)
    unknown = [p for p in properties if p not in QM9_PROPERTIES]
    if unknown:
        raise ValueError(f"unknown QM9 properties {unknown}; available: {list(QM9_PROPERTIES)}")
    dtype = resolve_dtype(dtype)
    if path is None:
        files = qm9pack_files()
    elif isinstance(path, (str, os.PathLike)):
        files = [existing_file(path, "QM9 CSV")]
    else:
        files = [existing_file(p, "QM9 CSV") for p in path]
    wanted = normalize_indices(indices, None, "read_qm9")
    if wanted is not None:
        needed = set(wanted.tolist())
        stop = int(wanted.max()) + 1 if wanted.size else 0
    else:
        needed = None
        stop = None if limit is None else int(limit)

    found: dict[int, AtomicData] = {}
    n_rows = 0
    for position, row, where in _rows(files, properties, stop):
        n_rows = position + 1
        if needed is None or position in needed:
            found[position] = _molecule(row, properties, dtype, where)
    if wanted is not None:
        missing = sorted(needed - set(found))
        if missing:
            raise IndexError(f"read_qm9: indices {missing[:10]} out of range; the files hold {n_rows} molecules")
        data = [found[int(i)] for i in wanted]
    else:
        data = [found[i] for i in sorted(found)]
    units = {key: QM9_PROPERTIES[key][2] for key in properties}
    return AtomicDataset(
        data,
        metadata={"source": "qm9", "files": [str(f) for f in files], "units": units,
                  "level_of_theory": "B3LYP/6-31G(2df,p)"},
    )


class _Row:
    """One CSV row addressed by column name, without building a dict per row."""

    __slots__ = ("values", "columns")

    def __init__(self, values: list[str], columns: dict[str, int]):
        self.values, self.columns = values, columns

    def __getitem__(self, column: str) -> str:
        return self.values[self.columns[column]]


def _rows(files: Sequence[Path], properties: Sequence[str], stop: int | None) -> Iterator[tuple[int, _Row, str]]:
    """Yield (row position, row, "file:line") across ``files``, stopping before ``stop``."""
    position = 0
    required = list(_STRUCTURE_COLUMNS) + [QM9_PROPERTIES[p][0] for p in properties]
    for file in files:
        if stop is not None and position >= stop:
            return
        with open(file, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{file} is empty; expected a QM9 CSV with columns {list(QM9_COLUMNS)}")
            columns = {name.strip(): i for i, name in enumerate(header)}
            missing = [c for c in required if c not in columns]
            if missing:
                raise ValueError(
                    f"{file} is not a QM9 CSV in the qm9pack format: missing columns {missing} "
                    f"(found {list(columns)[:30]})"
                )
            for values in reader:
                if stop is not None and position >= stop:
                    return
                if not values:  # a blank line, e.g. at the end of a hand-edited file
                    continue
                if len(values) != len(header):
                    raise ValueError(f"{file}:{reader.line_num}: {len(values)} fields, the header has {len(header)}")
                yield position, _Row(values, columns), f"{file}:{reader.line_num}"
                position += 1


_Z_OF_SYMBOL: dict[str, int] = {}


def _symbol_to_z(symbol: str) -> int:
    z = _Z_OF_SYMBOL.get(symbol)
    if z is None:
        z = _Z_OF_SYMBOL[symbol] = atomic_number(symbol)
    return z


def _molecule(row: _Row, properties: Sequence[str], dtype, where: str) -> AtomicData:
    try:
        # Elements look like "['C','H','H']" and XYZ_Ang like "[[x,y,z],[x,y,z]]" (numbers may be
        # written "0." or "1.", which JSON rejects), so both are split by hand rather than parsed.
        symbols = [s.strip().strip("'\"") for s in row["Elements"].strip().strip("[]").split(",")]
        z = [_symbol_to_z(s) for s in symbols]
        flat = row["XYZ_Ang"].replace("[", " ").replace("]", " ").split(",")
        positions = np.array(flat, dtype=np.float64)
        n_atoms = int(row["N_atoms"])
        if len(z) != n_atoms or positions.size != 3 * n_atoms:
            raise ValueError(
                f"N_atoms is {n_atoms} but there are {len(z)} elements and {positions.size} coordinates"
            )
        values = {}
        for key in properties:
            column, factor, _ = QM9_PROPERTIES[key]
            values[key] = float(row[column]) * factor
        qm9_id = int(row["Index"])
        data = AtomicData.from_arrays(z, positions.reshape(n_atoms, 3), dtype=dtype, qm9_id=qm9_id, **values)
    except ValueError as error:
        raise ValueError(f"{where}: cannot read this QM9 row: {error}") from error
    data[keys.SMILES] = row["SMILES"]
    return data
