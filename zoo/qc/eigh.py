"""Differentiable generalised eigensolver H C = S C ε and the closed-shell density matrix.

Self-consistency training differentiates orbitals and density matrices with respect to a
predicted Hamiltonian. The textbook backward of an eigensolver divides by orbital-energy gaps
εi − εj, which blows up for (near-)degenerate orbitals, common in symmetric molecules. Here the
inverse gap is broadened, 1/Δ -> Δ/(Δ² + η²): it stays antisymmetric in (i, j), so quantities
invariant under rotations among degenerate orbitals (such as the density matrix of a filled
degenerate shell) keep their exact gradient, and every gradient stays finite.

Works in any AO order, on tensors of shape ``[..., n_ao, n_ao]`` (a leading batch of molecules
with the same number of AOs) or on lists of per-molecule matrices.
"""

from __future__ import annotations

import torch

#: Default Lorentzian broadening η of inverse orbital-energy gaps, in Hartree.
DEFAULT_BROADENING = 1e-6


def orthogonalizer(overlap: torch.Tensor, lindep: float | None = None) -> torch.Tensor:
    """``X`` with ``X^T S X = 1``: symmetric ``S^-1/2``, or canonical when dropping directions.

    With ``lindep`` set, eigen-directions of S with eigenvalue below it (near-linear dependence
    of the basis) are dropped and ``X`` is ``[n_ao, n_kept]``; all molecules of a batch must then
    keep the same number.
    """
    values, vectors = torch.linalg.eigh(overlap)
    if lindep is None:
        return (vectors * values.rsqrt().unsqueeze(-2)) @ vectors.mT
    keep = values > lindep
    n_keep = keep.sum(-1)
    if n_keep.numel() > 1 and not bool((n_keep == n_keep.flatten()[0]).all()):
        raise ValueError("lindep drops a different number of directions per molecule; solve them one by one")
    n = int(n_keep.flatten()[0])
    # eigh sorts ascending, so the kept directions are the last n
    return vectors[..., -n:] * values[..., -n:].rsqrt().unsqueeze(-2)


class _GeneralizedEigh(torch.autograd.Function):
    """Forward via S^-1/2; backward from first-order perturbation theory of H C = S C ε."""

    @staticmethod
    def forward(ctx, hamiltonian, overlap, broadening, lindep):
        x = orthogonalizer(overlap, lindep)
        energies, vectors = torch.linalg.eigh(x.mT @ hamiltonian @ x)
        coefficients = x @ vectors
        ctx.save_for_backward(energies, coefficients)
        ctx.broadening = broadening
        return energies, coefficients

    @staticmethod
    def backward(ctx, grad_energies, grad_coefficients):
        energies, c = ctx.saved_tensors
        gap = energies.unsqueeze(-2) - energies.unsqueeze(-1)  # gap[j, i] = ε_i − ε_j
        inverse_gap = gap / (gap**2 + ctx.broadening**2)  # zero on the diagonal
        a = c.mT @ grad_coefficients
        # dε_i = C_i^T (dH − ε_i dS) C_i;  dC = C Q with
        # Q_ji = C_j^T (dH − ε_i dS) C_i / (ε_i − ε_j) (j != i),  Q_ii = −½ C_i^T dS C_i
        g_h = torch.diag_embed(grad_energies) + a * inverse_gap
        g_s = -g_h * energies.unsqueeze(-2) - 0.5 * torch.diag_embed(torch.diagonal(a, dim1=-2, dim2=-1))
        grad_h = c @ g_h @ c.mT
        grad_s = c @ g_s @ c.mT
        # H and S are symmetric: report the gradient within symmetric matrices
        return 0.5 * (grad_h + grad_h.mT), 0.5 * (grad_s + grad_s.mT), None, None


def generalized_eigh(
    hamiltonian: torch.Tensor,
    overlap: torch.Tensor,
    broadening: float = DEFAULT_BROADENING,
    lindep: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Orbital energies ``ε [..., n_mo]`` (ascending) and coefficients ``C [..., n_ao, n_mo]``.

    Solves ``H C = S C ε`` with ``C^T S C = 1``; differentiable in H and S (the S gradient
    assumes no directions were dropped by ``lindep``). ``broadening`` (Hartree) regularises the
    inverse orbital-energy gaps of the backward pass.
    """
    if hamiltonian.shape != overlap.shape or hamiltonian.shape[-1] != hamiltonian.shape[-2]:
        raise ValueError(f"H {tuple(hamiltonian.shape)} and S {tuple(overlap.shape)} must be equal square matrices")
    return _GeneralizedEigh.apply(hamiltonian, overlap, broadening, lindep)


def generalized_eigh_list(hamiltonians, overlaps, **kwargs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`generalized_eigh` for molecules of different sizes, one pair of matrices each."""
    if len(hamiltonians) != len(overlaps):
        raise ValueError(f"{len(hamiltonians)} Hamiltonians but {len(overlaps)} overlaps")
    return [generalized_eigh(h, s, **kwargs) for h, s in zip(hamiltonians, overlaps)]


def density_matrix(coefficients: torch.Tensor, n_occ) -> torch.Tensor:
    """Closed-shell density matrix ``D = 2 C_occ C_occ^T`` from the ``n_occ`` lowest orbitals.

    ``n_occ`` is an int, or a tensor of shape ``coefficients.shape[:-2]`` for a batch.
    """
    n_mo = coefficients.shape[-1]
    n_occ = torch.as_tensor(n_occ, device=coefficients.device)
    if bool((n_occ < 0).any()) or bool((n_occ > n_mo).any()):
        raise ValueError(f"n_occ={n_occ.tolist()} outside 0..{n_mo} orbitals")
    occupied = torch.arange(n_mo, device=coefficients.device) < n_occ.unsqueeze(-1)
    weights = 2.0 * occupied.to(coefficients.dtype)
    return (coefficients * weights.unsqueeze(-2)) @ coefficients.mT
