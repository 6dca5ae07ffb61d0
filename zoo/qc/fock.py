"""Differentiable Fock/Kohn–Sham matrix H[D] = h + J[D] − ½αK[D] + Vxc[D] from PySCF.

The self-consistency target of a predicted Hamiltonian H_θ is H[D(H_θ)], built at exactly the
model's level of theory. Its backward is PySCF's exact linear response ``mf.gen_response``: the
response kernel δH/δD is the second derivative of the energy, hence symmetric, so the vector-
Jacobian product equals the response applied to the (symmetrised) upstream gradient.

All matrices are in **PySCF AO order** (see :mod:`zoo.qc.ao` to convert from/to e3nn order),
in Hartree, as float64 on the CPU for PySCF; torch tensors come back in the input's dtype and
device. Closed shell only (RHF/RKS), with D the total density matrix (trace(D S) = N).
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.qc.eigh import density_matrix, generalized_eigh
from zoo.qc.level import LevelOfTheory


def _as_mole(molecule, level: LevelOfTheory):
    from pyscf import gto

    if isinstance(molecule, gto.Mole):
        if isinstance(molecule.basis, str) and molecule.basis.lower() != level.basis:
            raise ValueError(
                f"molecule is built in basis {molecule.basis!r} but the level of theory says {level.basis!r}"
            )
        return molecule
    if hasattr(molecule, "numbers") and hasattr(molecule, "positions"):  # ase.Atoms
        return level.build_mole(molecule.numbers, molecule.positions)
    atomic_numbers, positions = molecule
    return level.build_mole(np.asarray(atomic_numbers), np.asarray(positions))


class FockBuilder:
    """H[D] for one molecule at one level of theory, differentiable in D.

    Args:
        molecule: a built :class:`pyscf.gto.Mole`, an :class:`ase.Atoms`, or a pair
            ``(atomic_numbers, positions_angstrom)``.
        level: the level of theory; the SCF object ``self.mf`` is built from it once (grids,
            density-fitting tensors and the core Hamiltonian are reused by every build).
    """

    def __init__(self, molecule, level: LevelOfTheory | None = None):
        self.level = level or LevelOfTheory()
        self.mol = _as_mole(molecule, self.level)
        self.mf = self.level.build_scf(self.mol)
        self.hcore = self.mf.get_hcore()
        self.overlap = self.mf.get_ovlp()
        self.n_occ = self.mol.nelectron // 2
        # S^-1/2 and S^1/2, to write any density as natural orbitals for the response kernel
        values, vectors = np.linalg.eigh(self.overlap)
        self._s_half = (vectors * np.sqrt(values)) @ vectors.T
        self._s_inv_half = (vectors / np.sqrt(values)) @ vectors.T

    @property
    def n_ao(self) -> int:
        return self.mol.nao

    def _refresh_memory(self) -> None:
        # PySCF sizes its blocks by max_memory minus the process's current memory. Builders live in
        # caches for a whole training run, which grows the process; without this, later builds see
        # no room left and fall back to tiny out-of-core blocks (DF tensors on disk), many times slower.
        from pyscf import lib

        budget = lib.current_memory()[0] + lib.param.MAX_MEMORY
        self.mf.max_memory = budget
        if getattr(self.mf, "with_df", None) is not None:
            self.mf.with_df.max_memory = budget

    def fock_numpy(self, density: np.ndarray) -> np.ndarray:
        """H[D] as a NumPy array (D symmetric, PySCF order)."""
        self._refresh_memory()
        return self.hcore + np.asarray(self.mf.get_veff(self.mol, density))

    def response_numpy(self, density: np.ndarray, perturbation: np.ndarray) -> np.ndarray:
        """δH = (δH/δD)[perturbation] at density D, both symmetric (PySCF's ``gen_response``)."""
        # natural orbitals C, occupations n with C diag(n) C^T = D: the kernel needs the density
        # of D itself (Vxc's second derivative depends on it), not the SCF solution's
        occupations, vectors = np.linalg.eigh(self._s_half @ density @ self._s_half)
        self._refresh_memory()
        response = self.mf.gen_response(self._s_inv_half @ vectors, occupations, singlet=None, hermi=1)
        return np.asarray(response(perturbation))

    def build(self, density: torch.Tensor) -> torch.Tensor:
        """H[D] as a torch tensor, differentiable in D (first order; no double backward)."""
        if density.shape != (self.n_ao, self.n_ao):
            raise ValueError(
                f"density has shape {tuple(density.shape)}, expected ({self.n_ao}, {self.n_ao}) in PySCF AO order"
            )
        return _Fock.apply(density, self)

    def self_consistency_residual(self, hamiltonian: torch.Tensor, **eigh_kwargs) -> torch.Tensor:
        """H − H[D(H)], with D(H) the closed-shell density of the lowest ``n_occ`` orbitals of H."""
        overlap = torch.as_tensor(self.overlap, dtype=hamiltonian.dtype, device=hamiltonian.device)
        _, coefficients = generalized_eigh(hamiltonian, overlap, **eigh_kwargs)
        return hamiltonian - self.build(density_matrix(coefficients, self.n_occ))


class _Fock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, density, builder):
        dm = density.detach().cpu().double().numpy()
        dm = 0.5 * (dm + dm.T)
        ctx.builder = builder
        ctx.density = dm
        return torch.as_tensor(builder.fock_numpy(dm), dtype=density.dtype, device=density.device)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad = grad_output.detach().cpu().double().numpy()
        # H[D] reads only the symmetric part of D, and its kernel is symmetric
        grad_density = ctx.builder.response_numpy(ctx.density, 0.5 * (grad + grad.T))
        return torch.as_tensor(grad_density, dtype=grad_output.dtype, device=grad_output.device), None


def build_fock_list(builders: list[FockBuilder], densities: list[torch.Tensor]) -> list[torch.Tensor]:
    """H[D] for a list of molecules (different sizes), one builder and density each."""
    if len(builders) != len(densities):
        raise ValueError(f"{len(builders)} builders but {len(densities)} densities")
    return [builder.build(density) for builder, density in zip(builders, densities)]
