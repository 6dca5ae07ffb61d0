"""Atomic-orbital layout and conventions: the one place that knows how AOs are ordered.

Three orders appear in the zoo:

* **PySCF order** (``cart=False``): per atom, shells in basis order; per shell, the contractions
  one after another; per contraction, the 2l+1 real spherical components. p is (px, py, pz);
  l >= 2 is m = -l..l about the z axis, e.g. d = (dxy, dyz, dz², dxz, dx²−y²). Every matrix the
  zoo stores (datasets, Fock builder, SCF guess) is in this order.
* **e3nn order**: same shells, but each shell's components are e3nn's real spherical harmonics
  (``e3nn.o3.spherical_harmonics``), so that an AO matrix of a rotated molecule is
  ``D @ M @ D.T`` with ``D = molecule_irreps(...).D_from_matrix(R)`` for the Cartesian rotation
  ``R`` of the positions (``pos_rotated = pos @ R.T``), improper rotations included (an l shell
  has parity (-1)^l). Equivariant models predict in this order.
* **ORCA order** (SchNOrb's MD17 Hamiltonians): m = 0, +1, −1, +2, −2, ..., so p = (pz, px, py),
  and the functions with |m| >= 3 have the opposite sign to PySCF's.

.. note::
   e3nn 0.6 puts the polar axis of its harmonics along **y**: its l=1 basis is (x, y, z), the same
   as PySCF's p, but its l=2 basis is (zx, xy, 3y²−r², yz, z²−x²) up to normalisation. PySCF's
   d functions (polar axis z) are therefore *not* a signed permutation of e3nn's; the map is a
   (2l+1)×(2l+1) orthogonal matrix per l, derived below from PySCF's own AO values and e3nn's
   harmonics at random points, never written by hand.

All conversions are orthogonal changes of basis ``M -> T M T^T`` applied to AO axes, so they
work alike for Fock/overlap/density matrices (both axes), coefficient matrices (the AO row
axis) and AO vectors.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from e3nn import o3

#: Points on the unit sphere used to fit the PySCF -> e3nn map (many more than 2l+1 unknowns).
_N_FIT_POINTS = 64


def _element(element) -> tuple[int, str]:
    """Atomic number and PySCF's symbol of an element given by symbol (``"C"``) or number (6)."""
    # PySCF's own table: zoo.qc sits below the data layer and imports nothing from it
    from pyscf.data.elements import ELEMENTS, charge

    number = charge(element) if isinstance(element, str) else int(element)
    if not 0 < number < len(ELEMENTS):
        raise ValueError(f"unknown element {element!r}; use a symbol such as 'H', 'C', 'O' or an atomic number")
    return number, ELEMENTS[number]


@lru_cache(maxsize=None)
def shells(basis: str, element) -> tuple[tuple[int, int], ...]:
    """Shells of ``element`` in ``basis``, in PySCF order: ``((l, n_contractions), ...)``."""
    from pyscf import gto

    from zoo.qc.level import basis_has_element

    number, symbol = _element(element)
    if not basis_has_element(basis, symbol):
        raise ValueError(f"basis {basis!r} has no functions for element {symbol}")
    # A lone atom; the spin only has to make the electron count consistent, shells ignore it.
    mol = gto.M(atom=[[symbol, (0.0, 0.0, 0.0)]], basis=basis, spin=number % 2, verbose=0)
    return tuple((int(mol.bas_angular(i)), int(mol.bas_nctr(i))) for i in range(mol.nbas))


def ao_irreps(basis: str, element) -> o3.Irreps:
    """e3nn irreps of one atom's AOs, in AO order; e.g. def2-SVP O is ``3x0e+2x1o+1x2e``."""
    irreps = o3.Irreps([(n, (l, (-1) ** l)) for l, n in shells(basis, element)])
    # merge neighbours only ("1x0e+1x0e" -> "2x0e"): sorting would reorder the AOs
    return irreps.simplify()


def n_ao(basis: str, element) -> int:
    """Number of AOs of one atom."""
    return sum(n * (2 * l + 1) for l, n in shells(basis, element))


def ao_offsets(atomic_numbers, basis: str) -> np.ndarray:
    """AO offsets per atom, ``[n_atoms + 1]``: atom i owns AOs ``offsets[i]:offsets[i + 1]``."""
    counts = [n_ao(basis, int(z)) for z in np.asarray(atomic_numbers).reshape(-1)]
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def molecule_irreps(atomic_numbers, basis: str) -> o3.Irreps:
    """e3nn irreps of all AOs of a molecule, atom after atom (not merged across atoms)."""
    irreps = o3.Irreps("")
    for z in np.asarray(atomic_numbers).reshape(-1):
        irreps = irreps + ao_irreps(basis, int(z))
    return irreps


def wigner_D(atomic_numbers, basis: str, rotation) -> torch.Tensor:
    """Block-diagonal representation ``D`` of a 3×3 (proper or improper) rotation on the AOs.

    For AO matrices in e3nn order, the molecule with positions ``pos @ R.T`` has the matrix
    ``D @ M @ D.T``.
    """
    rotation = torch.as_tensor(rotation)
    # e3nn builds its so(3) generators in torch's default dtype; in float32 D is only good to
    # ~1e-7, so build it in the dtype of the rotation.
    default = torch.get_default_dtype()
    torch.set_default_dtype(rotation.dtype)
    try:
        return molecule_irreps(atomic_numbers, basis).D_from_matrix(rotation)
    finally:
        torch.set_default_dtype(default)


@lru_cache(maxsize=None)
def pyscf_to_e3nn_block(l: int) -> np.ndarray:
    """Orthogonal ``B`` with ``x_e3nn = B @ x_pyscf`` for the 2l+1 components of one l shell.

    Fitted, not assumed: PySCF's AO values of a single l shell on the unit sphere are written
    as a linear combination of e3nn's harmonics there (the radial factor is common to all
    components and only scales the fit, which is then normalised).
    """
    from pyscf import gto

    mol = gto.M(atom=[["He", (0.0, 0.0, 0.0)]], basis={"He": [[l, [1.0, 1.0]]]}, verbose=0)
    points = np.random.default_rng(l).normal(size=(_N_FIT_POINTS, 3))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    y_pyscf = mol.eval_gto("GTOval_sph", points)
    y_e3nn = o3.spherical_harmonics(l, torch.as_tensor(points), normalize=True).numpy()
    coefficients, *_ = np.linalg.lstsq(y_e3nn, y_pyscf, rcond=None)  # y_pyscf = y_e3nn @ C
    block = coefficients / np.sqrt(np.mean(np.sum(coefficients**2, axis=1)))
    if not np.allclose(block @ block.T, np.eye(2 * l + 1), atol=1e-10):
        raise RuntimeError(f"PySCF and e3nn l={l} harmonics do not span the same space")
    # AO functions phi_pyscf = C^T psi_e3nn, so matrices and coefficients map with B = C.
    return block


def orca_m_order(l: int) -> list[int]:
    """ORCA's order of the magnetic quantum numbers of an l shell: 0, +1, −1, ..., +l, −l."""
    return [0] + [sign * m for m in range(1, l + 1) for sign in (1, -1)]


@lru_cache(maxsize=None)
def orca_to_pyscf_block(l: int) -> np.ndarray:
    """Signed permutation ``P`` with ``x_pyscf = P @ x_orca`` for one l shell.

    ORCA orders m as 0, +1, −1, ..., +l, −l and flips the sign of |m| >= 3 relative to PySCF
    (the convention also used by SchNOrb's OrcaRotator and Q-stack's reorder module).
    """
    orca_m = orca_m_order(l)
    pyscf_m = [1, -1, 0] if l == 1 else list(range(-l, l + 1))  # PySCF p is (x, y, z)
    block = np.zeros((2 * l + 1, 2 * l + 1))
    for row, m in enumerate(pyscf_m):
        block[row, orca_m.index(m)] = -1.0 if abs(m) >= 3 else 1.0
    return block


def _molecule_transform(atomic_numbers, basis: str, block_of_l) -> np.ndarray:
    blocks = [
        block_of_l(l)
        for z in np.asarray(atomic_numbers).reshape(-1)
        for l, n in shells(basis, int(z))
        for _ in range(n)
    ]
    size = sum(b.shape[0] for b in blocks)
    transform = np.zeros((size, size))
    start = 0
    for b in blocks:
        transform[start:start + len(b), start:start + len(b)] = b
        start += len(b)
    return transform


@lru_cache(maxsize=4096)
def _cached_transform(atomic_numbers: tuple, basis: str, kind: str) -> np.ndarray:
    block_of_l = pyscf_to_e3nn_block if kind == "e3nn" else orca_to_pyscf_block
    transform = _molecule_transform(atomic_numbers, basis, block_of_l)
    transform.flags.writeable = False
    return transform


def _transform(atomic_numbers, basis: str, kind: str) -> np.ndarray:
    return _cached_transform(tuple(int(z) for z in np.asarray(atomic_numbers).reshape(-1)), basis.lower(), kind)


def pyscf_to_e3nn_matrix(atomic_numbers, basis: str) -> np.ndarray:
    """Block-diagonal orthogonal ``T`` with ``x_e3nn = T @ x_pyscf`` for a whole molecule."""
    return _transform(atomic_numbers, basis, "e3nn")


def orca_to_pyscf_matrix(atomic_numbers, basis: str) -> np.ndarray:
    """Block-diagonal signed permutation ``P`` with ``x_pyscf = P @ x_orca`` for a molecule.

    Assumes ORCA lists each atom's shells in PySCF's order (true for the def2 family; check
    bases whose ORCA files interleave sp shells).
    """
    return _transform(atomic_numbers, basis, "orca")


def _apply(x, transform: np.ndarray, axes):
    """``T`` applied along each of ``axes`` of ``x`` (numpy array or torch tensor)."""
    is_torch = isinstance(x, torch.Tensor)
    if is_torch:
        t = torch.tensor(transform, dtype=x.dtype, device=x.device)
    else:
        x, t = np.asarray(x), transform
    for axis in axes:
        if x.shape[axis] != len(t):
            raise ValueError(f"axis {axis} has {x.shape[axis]} entries but the molecule has {len(t)} AOs")
        if is_torch:
            x = torch.movedim(torch.tensordot(t, torch.movedim(x, axis, 0), dims=1), 0, axis)
        else:
            x = np.moveaxis(np.tensordot(t, np.moveaxis(x, axis, 0), axes=1), 0, axis)
    return x


def pyscf_to_e3nn(x, atomic_numbers, basis: str, axes=(-2, -1)):
    """Convert AO axes of ``x`` from PySCF to e3nn order.

    ``axes=(-2, -1)`` for square AO matrices (Fock, overlap, density), ``(-2,)`` for MO
    coefficient matrices ``C[ao, mo]``, ``(-1,)`` for AO vectors.
    """
    return _apply(x, pyscf_to_e3nn_matrix(atomic_numbers, basis), axes)


def e3nn_to_pyscf(x, atomic_numbers, basis: str, axes=(-2, -1)):
    """Inverse of :func:`pyscf_to_e3nn`."""
    return _apply(x, pyscf_to_e3nn_matrix(atomic_numbers, basis).T, axes)


def orca_to_pyscf(x, atomic_numbers, basis: str, axes=(-2, -1)):
    """Convert AO axes of ``x`` from ORCA to PySCF order (see :func:`orca_to_pyscf_block`)."""
    return _apply(x, orca_to_pyscf_matrix(atomic_numbers, basis), axes)


def pyscf_to_orca(x, atomic_numbers, basis: str, axes=(-2, -1)):
    """Inverse of :func:`orca_to_pyscf`."""
    return _apply(x, orca_to_pyscf_matrix(atomic_numbers, basis).T, axes)
