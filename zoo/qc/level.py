"""The level of theory: one frozen record that builds PySCF molecules and SCF objects.

Every Hamiltonian label, self-consistency target, dataset and checkpoint carries one of these,
so that data made at one level of theory is never mixed with a model trained at another: the
Hamiltonian file's metadata (:class:`zoo.data.HamiltonianMetadata`), a model card's
``level_of_theory`` and :class:`zoo.models.HamiltonianModel`'s ``level`` are this record. It
imports PySCF only in the methods that need it.

.. warning::
   ``xc="b3lyp"`` in PySCF (since 2.3) is the **VWN-RPA** variant of B3LYP. QH9 and most
   Gaussian-era data use the **VWN5** variant, spelled ``"b3lyp5"`` in PySCF. The two Fock
   matrices differ by ~130 µEh MAE, which is more than a good model's error; the default here is
   ``"b3lyp5"``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields
from itertools import combinations

import numpy as np

#: Minimum distance (Å) between two nuclei; closer means a broken structure, not chemistry.
MIN_DISTANCE_ANGSTROM = 0.1
#: Bases suggested, in this order, when an element is missing from the requested one.
_FALLBACK_BASES = ("def2-svp", "def2-tzvp", "cc-pvdz", "6-31g*", "sto-3g")
_METHODS = ("rks", "rhf")
#: The program zoo computes with; a level of another code (data made elsewhere) only describes data.
PYSCF = "pyscf"
#: A basis name PySCF knows defines at least one of these elements (most define H).
_BASIS_PROBE_ELEMENTS = ("H", "C", "Li", "Na", "K", "Rb", "Cs")
#: def2 bases replace the core of elements beyond Kr with an effective core potential.
_DEF2_FIRST_ECP_ELEMENT = 37


def pyscf_version() -> str:
    """The installed PySCF version, recorded next to every label."""
    import pyscf

    return pyscf.__version__


def basis_has_element(basis: str, symbol: str) -> bool:
    """Whether PySCF's basis library defines ``basis`` for element ``symbol``."""
    from pyscf.gto import basis as basis_lib
    from pyscf.lib.exceptions import BasisNotFoundError

    try:
        with warnings.catch_warnings():
            # PySCF suggests installing basis-set-exchange; irrelevant to a yes/no question.
            warnings.simplefilter("ignore")
            return len(basis_lib.load(basis, symbol)) > 0
    except (BasisNotFoundError, KeyError):
        return False


@dataclass(frozen=True)
class LevelOfTheory:
    """Method, functional, basis and numerical settings of a calculation.

    Attributes:
        method: ``"rks"`` (Kohn–Sham DFT) or ``"rhf"`` (Hartree–Fock); both closed shell.
        xc: PySCF functional string for ``"rks"``; must be ``None`` for ``"rhf"``.
            Note ``"b3lyp"`` is the VWN-RPA variant; QH9 used ``"b3lyp5"`` (VWN5).
        basis: PySCF basis name, e.g. ``"def2-svp"``.
        grid_level: PySCF ``grids.level`` (0–9) of the XC quadrature. ``None`` where there is no
            PySCF grid: always for Hartree–Fock (set so whatever is given), and for DFT made by
            another ``code`` on its own grid.
        density_fitting: use RI-J/K (``mf.density_fit()``) with PySCF's default auxiliary basis.
        charge: total molecular charge.
        spin: 2S, the number of unpaired electrons; only 0 is supported (closed shell).
        code: the program of the calculation: ``"pyscf"``, the one zoo runs, or another for data
            made elsewhere (``"orca"`` for SchNOrb's), whose grids and defaults no PySCF setting
            reproduces: such a level describes data, and builds no SCF.
    """

    method: str = "rks"
    xc: str | None = "b3lyp5"
    basis: str = "def2-svp"
    grid_level: int | None = 3
    density_fitting: bool = False
    charge: int = 0
    spin: int = 0
    code: str = PYSCF

    def __post_init__(self):
        for name in ("method", "basis", "code"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
            object.__setattr__(self, name, value.lower())
        for name in ("charge", "spin") + (("grid_level",) if self.grid_level is not None else ()):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))  # numpy integers (h5py) compare and hash alike
        if not isinstance(self.density_fitting, (bool, np.bool_)):
            raise ValueError(f"density_fitting must be a bool, got {self.density_fitting!r}")
        object.__setattr__(self, "density_fitting", bool(self.density_fitting))
        if self.method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        if self.method == "rks":
            if not isinstance(self.xc, str) or not self.xc:
                raise ValueError("method 'rks' needs an xc functional, e.g. xc='b3lyp5'")
            object.__setattr__(self, "xc", self.xc.lower())
        elif self.xc is not None:
            raise ValueError(f"method 'rhf' takes no xc functional (got xc={self.xc!r}); use xc=None")
        else:
            object.__setattr__(self, "grid_level", None)  # Hartree–Fock has no XC grid
        if self.method == "rks" and self.grid_level is None and self.code == PYSCF:
            raise ValueError("a PySCF DFT calculation needs a grid_level (PySCF grids.level, 0..9)")
        if self.grid_level is not None and not 0 <= self.grid_level <= 9:
            raise ValueError(f"grid_level must be in 0..9 (PySCF grids.level), got {self.grid_level}")
        if self.spin != 0:
            raise ValueError(
                f"spin={self.spin}: only closed-shell (spin=0) RKS/RHF is supported; "
                "open-shell methods are not implemented"
            )

    @property
    def is_dft(self) -> bool:
        return self.method == "rks"

    def describe(self) -> str:
        """Short human-readable form, e.g. ``"RKS b3lyp5/def2-svp grid 3"``, ``"RKS pbe/def2-svp (orca)"``."""
        text = f"RKS {self.xc}/{self.basis}" if self.is_dft else f"RHF/{self.basis}"
        if self.grid_level is not None:
            text += f" grid {self.grid_level}"
        if self.density_fitting:
            text += " RI"
        if self.charge:
            text += f" charge {self.charge:+d}"
        if self.code != PYSCF:
            text += f" ({self.code})"
        return text

    def as_dict(self) -> dict:
        """Plain-JSON form (stored with datasets and checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LevelOfTheory":
        """Inverse of :meth:`as_dict`; a missing field takes its default (records written before the
        field existed), an unknown one is an error rather than silently dropped."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown level-of-theory fields {sorted(unknown)}; expected {sorted(known)}")
        return cls(**data)

    def _require_pyscf(self) -> None:
        if self.code != PYSCF:
            raise ValueError(
                f"{self.describe()} is a level of {self.code}, whose grids and defaults PySCF does not reproduce; "
                "compute at the nearest PySCF level instead, dataclasses.replace(level, code='pyscf', grid_level=3)")

    def check_available(self) -> None:
        """Fail before any work if PySCF does not know the functional or the basis.

        Otherwise an unknown ``xc`` only surfaces as a libxc ``KeyError`` inside the first SCF,
        after the input was read and the run announced.

        Raises:
            ValueError: naming the unknown functional or basis, and how to find valid names, or a
                level of another ``code``.
        """
        from pyscf.dft import libxc

        self._require_pyscf()
        if self.is_dft:
            try:
                libxc.parse_xc(self.xc)
            except (KeyError, ValueError):
                raise ValueError(
                    f"unknown functional xc={self.xc!r}: PySCF/libxc has none of that name; use one such as "
                    "'b3lyp5', 'pbe', 'pbe0' or 'wb97x' (see pyscf.dft.libxc.XC_CODES)") from None
        if not any(basis_has_element(self.basis, symbol) for symbol in _BASIS_PROBE_ELEMENTS):
            raise ValueError(
                f"unknown basis {self.basis!r}: PySCF's basis library has no basis of that name; use a "
                "name such as 'def2-svp', 'cc-pvdz', '6-31g*' or 'sto-3g' (see pyscf/gto/basis)")

    def check_atoms(self, atomic_numbers) -> None:
        """Fail for what no geometry can fix: an element the basis lacks, an odd electron count.

        Raises ``ValueError`` naming the element (and a basis that has it) or the electron count.
        """
        from pyscf.data.elements import ELEMENTS

        z = np.asarray(atomic_numbers, dtype=int).reshape(-1)
        for symbol in sorted({ELEMENTS[int(n)] for n in z}):
            if not basis_has_element(self.basis, symbol):
                alternatives = [b for b in _FALLBACK_BASES if basis_has_element(b, symbol)]
                hint = f"; {alternatives[0]!r} has it" if alternatives else ""
                raise ValueError(f"basis {self.basis!r} has no functions for element {symbol}{hint}")
        n_electrons = int(z.sum()) - self.charge
        if n_electrons % 2:
            raise ValueError(
                f"{n_electrons} electrons (charge {self.charge}) is odd, which a closed-shell "
                f"{self.method.upper()} with spin=0 cannot describe; set spin=1 and use an "
                "open-shell method (not supported here), or change the charge"
            )

    def build_mole(self, atomic_numbers, positions_angstrom):
        """A built :class:`pyscf.gto.Mole` for atoms ``atomic_numbers`` at positions in Å.

        Raises ``ValueError`` for an element the basis does not cover, an odd electron count
        (closed-shell methods only; :meth:`check_atoms`), or two atoms closer than
        :data:`MIN_DISTANCE_ANGSTROM`.
        """
        from pyscf import gto
        from pyscf.data.elements import ELEMENTS

        z = np.asarray(atomic_numbers, dtype=int).reshape(-1)
        pos = np.asarray(positions_angstrom, dtype=float).reshape(-1, 3)
        if len(z) == 0 or len(z) != len(pos):
            raise ValueError(f"need one position per atom: {len(z)} atomic numbers, {len(pos)} positions")
        self.check_atoms(z)
        symbols = [ELEMENTS[int(n)] for n in z]
        for i, j in combinations(range(len(z)), 2):
            distance = float(np.linalg.norm(pos[i] - pos[j]))
            if distance < MIN_DISTANCE_ANGSTROM:
                raise ValueError(
                    f"atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are {distance:.3g} Å apart "
                    f"(< {MIN_DISTANCE_ANGSTROM} Å); the structure overlaps"
                )
        ecp = {}
        if self.basis.startswith("def2"):
            ecp = {s: self.basis for s, n in zip(symbols, z) if n >= _DEF2_FIRST_ECP_ELEMENT}
        return gto.M(
            atom=list(zip(symbols, pos.tolist())),
            unit="Angstrom",
            basis=self.basis,
            ecp=ecp,
            charge=self.charge,
            spin=self.spin,
            cart=False,  # real spherical AOs: the convention of zoo.qc.ao
            verbose=0,
        )

    def build_scf(self, mol, conv_tol: float = 1e-10, max_cycle: int = 100):
        """An unconverged PySCF SCF object (RKS or RHF) for ``mol`` at this level of theory.

        ``conv_tol`` is tight by default because labels and self-consistency targets are compared
        at the µEh level; ``conv_tol_grad`` follows PySCF's default (sqrt(conv_tol)). A level of
        another ``code`` is a ``ValueError``.
        """
        from pyscf import dft, scf

        self._require_pyscf()
        if self.is_dft:
            mf = dft.RKS(mol)
            mf.xc = self.xc
            mf.grids.level = int(self.grid_level)
        else:
            mf = scf.RHF(mol)
        if self.density_fitting:
            mf = mf.density_fit()
        mf.conv_tol = conv_tol
        mf.max_cycle = max_cycle
        mf.verbose = 0
        return mf
