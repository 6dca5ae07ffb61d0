"""The level of theory and conventions of a Hamiltonian dataset, as the attributes of its file spell them.

A :class:`HamiltonianMetadata` is what the HDF5 format of :mod:`zoo.data.readers.hamiltonian` stores
in the file's attributes, what ``zoo label`` records on every extended-XYZ frame, and what a
Hamiltonian model needs of its data. The attributes spell the level of theory flat
(:data:`LEVEL_ATTRS`): Hartree–Fock as ``xc="hf"``, no PySCF grid as ``grid_level=-1``; in memory
it is a :class:`~zoo.qc.LevelOfTheory`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from zoo.qc.level import PYSCF, LevelOfTheory, pyscf_version

FORMAT = "zoo-hamiltonian"
FORMAT_VERSION = 1
AO_CONVENTIONS = ("pyscf", "e3nn")

#: The attributes that spell a level of theory and the PySCF version, flat: Hartree–Fock as
#: ``xc="hf"``, no PySCF grid as ``grid_level=-1``. A level of another code than PySCF adds ``code``.
LEVEL_ATTRS = ("xc", "basis", "grid_level", "density_fitting", "pyscf_version", "charge", "spin")
_HF, _NO_GRID = "hf", -1


@dataclass(frozen=True)
class HamiltonianMetadata:
    """The level of theory and conventions of a Hamiltonian dataset (or what a model needs of one).

    Args:
        level: the :class:`~zoo.qc.LevelOfTheory` of the matrices.
        pyscf_version: the PySCF version that computed them (or what did, e.g. ``"none (ORCA)"``).
        ao_convention: AO order inside each shell, ``"pyscf"`` (p = x, y, z) or ``"e3nn"`` (y, z, x).
        units: units of the matrices and orbital energies; only ``"hartree"``.
    """

    level: LevelOfTheory
    pyscf_version: str
    ao_convention: str = "pyscf"
    units: str = "hartree"

    def __post_init__(self):
        problems = []
        if not isinstance(self.level, LevelOfTheory):
            problems.append(f"level must be a LevelOfTheory, got {type(self.level).__name__}")
        if not isinstance(self.pyscf_version, str) or not self.pyscf_version:
            problems.append(f"pyscf_version must be a non-empty string, got {self.pyscf_version!r}")
        if self.ao_convention not in AO_CONVENTIONS:
            problems.append(f"ao_convention must be one of {AO_CONVENTIONS}, got {self.ao_convention!r}")
        if self.units != "hartree":
            problems.append(f"units must be 'hartree', got {self.units!r}")
        if problems:
            raise ValueError("invalid Hamiltonian metadata: " + "; ".join(problems))

    @classmethod
    def computed_at(cls, level: LevelOfTheory) -> "HamiltonianMetadata":
        """What matrices computed now at ``level`` by the installed PySCF are: labels, or the data a
        model at ``level`` needs (PySCF AO order)."""
        return cls(level, pyscf_version())

    def level_attrs(self) -> dict:
        """The level of theory and PySCF version as the file's attributes spell them (:data:`LEVEL_ATTRS`);
        ``zoo label`` records the same entries on every extended-XYZ frame."""
        level = self.level
        attrs = {"xc": level.xc if level.is_dft else _HF, "basis": level.basis,
                 "grid_level": _NO_GRID if level.grid_level is None else level.grid_level,
                 "density_fitting": level.density_fitting, "pyscf_version": self.pyscf_version,
                 "charge": level.charge, "spin": level.spin}
        # files of PySCF levels keep the attributes of format 1 as zoo 0.1 wrote them
        return attrs if level.code == PYSCF else {**attrs, "code": level.code}

    @classmethod
    def from_level_attrs(cls, attrs: Mapping, source: str = "the file", **conventions) -> "HamiltonianMetadata":
        """Inverse of :meth:`level_attrs` (``conventions``: ``ao_convention``, ``units``).

        Raises:
            ValueError: a missing or invalid attribute, naming ``source``.
        """
        missing = [name for name in LEVEL_ATTRS if name not in attrs]
        if missing:
            raise ValueError(f"{source} lacks the metadata attributes {missing}; every one of "
                             f"{list(LEVEL_ATTRS)} is required")
        values = {}
        for name in (*LEVEL_ATTRS, "code"):
            value = attrs.get(name, PYSCF)
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, np.generic):  # h5py returns numpy scalars
                value = value.item()
            values[name] = value
        hf = isinstance(values["xc"], str) and values["xc"].lower() == _HF
        if not hf and values["grid_level"] == _NO_GRID and "code" not in attrs:
            values["code"] = "unknown"  # zoo 0.1 spelled a DFT of another code (SchNOrb's ORCA) so
        try:
            level = LevelOfTheory(method="rhf" if hf else "rks", xc=None if hf else values["xc"],
                                  basis=values["basis"],
                                  grid_level=None if values["grid_level"] == _NO_GRID else values["grid_level"],
                                  density_fitting=values["density_fitting"], charge=values["charge"],
                                  spin=values["spin"], code=values["code"])
            return cls(level, values["pyscf_version"], **conventions)
        except ValueError as error:
            raise ValueError(f"{source}: invalid Hamiltonian metadata: {error}") from error

    def to_attrs(self) -> dict:
        """The HDF5 file attributes, ``format`` and ``format_version`` included."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **self.level_attrs(),
                "ao_convention": self.ao_convention, "units": self.units}

    @classmethod
    def from_attrs(cls, attrs: Mapping, source: str = "the file") -> "HamiltonianMetadata":
        """Read and validate the attributes written by :meth:`to_attrs`.

        Raises:
            ValueError: not a zoo Hamiltonian file, a newer format version, or missing/invalid fields.
        """
        attrs = dict(attrs)
        if attrs.get("format") != FORMAT:
            raise ValueError(f"{source} is not a zoo Hamiltonian file: its 'format' attribute is "
                             f"{attrs.get('format')!r}, expected {FORMAT!r}")
        version = attrs.get("format_version")
        if version is None or int(version) != FORMAT_VERSION:
            raise ValueError(f"{source} has format_version {version!r}; this zoo reads version "
                             f"{FORMAT_VERSION} (a newer file needs a newer zoo)")
        missing = [name for name in (*LEVEL_ATTRS, "ao_convention", "units") if name not in attrs]
        if missing:
            raise ValueError(f"{source} lacks the metadata attributes {missing}; every one of "
                             f"{[*LEVEL_ATTRS, 'ao_convention', 'units']} is required")
        conventions = {name: attrs[name].decode() if isinstance(attrs[name], bytes) else attrs[name]
                       for name in ("ao_convention", "units")}
        return cls.from_level_attrs(attrs, source, **conventions)

    def check_compatible(self, other: "HamiltonianMetadata", ignore: Iterable[str] = ("pyscf_version",)) -> None:
        """Raise ``ValueError`` naming every field in which ``other`` differs from this metadata.

        Args:
            other: e.g. a dataset's metadata, checked against a model's (``self``).
            ignore: fields (of the level of theory, or ``pyscf_version``, ``ao_convention``,
                ``units``) allowed to differ. The PySCF version by default, except that
                ``"b3lyp"`` changed meaning in PySCF 2.3 (VWN5 before, VWN-RPA since), which is
                always checked.
        """
        ignore = set(ignore)
        ours, theirs = self._fields(), other._fields()
        mismatches = [f"{name}: {value!r} != {theirs[name]!r}" for name, value in ours.items()
                      if name not in ignore and value != theirs[name]]
        if (self.level.xc == other.level.xc == "b3lyp"
                and _before_2_3(self.pyscf_version) != _before_2_3(other.pyscf_version)):
            mismatches.append(
                f"xc: 'b3lyp' under PySCF {self.pyscf_version} and {other.pyscf_version} are different "
                "functionals (VWN5 before 2.3, VWN-RPA since); name 'b3lyp5' or 'b3lypg' explicitly"
            )
        if mismatches:
            raise ValueError("incompatible level of theory or conventions: " + "; ".join(mismatches))

    def _fields(self) -> dict:
        """Every field by name, those of the level of theory first."""
        return {**self.level.as_dict(), "pyscf_version": self.pyscf_version,
                "ao_convention": self.ao_convention, "units": self.units}


def _before_2_3(version: str) -> bool:
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) < (2, 3)
