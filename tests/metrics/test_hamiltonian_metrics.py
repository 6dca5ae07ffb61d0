"""Hamiltonian metrics on hand-made cases: zero error, a known perturbation, sign-flipped orbitals."""

import numpy as np
import pytest
import torch

from zoo.metrics import (
    HamiltonianMetrics,
    hamiltonian_mae,
    onsite_mask,
    orbital_metrics,
    split_matrices,
)
from zoo.qc.eigh import generalized_eigh


def _random_problem(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, dtype=torch.float64, generator=g)
    b = torch.randn(n, n, dtype=torch.float64, generator=g)
    return a + a.T, b @ b.T / n + torch.eye(n, dtype=torch.float64)  # H, S (positive definite)


def test_split_and_onsite_mask():
    flat = torch.arange(4 + 9, dtype=torch.float64)
    a, b = split_matrices(flat, torch.tensor([2, 3]))
    assert a.shape == (2, 2) and b.shape == (3, 3) and b[0, 0] == 4
    with pytest.raises(ValueError, match="do not hold"):
        split_matrices(flat, [3, 3])
    mask = onsite_mask([8, 1, 1], "def2-svp")  # 14 + 5 + 5 AOs
    assert mask.shape == (24, 24) and mask[:14, :14].all() and not mask[:14, 14:].any() and not mask[14:19, 19:].any()


def test_identical_matrices_give_zero_error_and_unit_cosine():
    h, s = _random_problem()
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[:3, :3] = mask[3:, 3:] = True
    assert hamiltonian_mae(h, h, mask) == {"all": 0.0, "diagonal": 0.0, "off_diagonal": 0.0}
    result = orbital_metrics(h, h, s, n_occ=3)
    assert result["orbital_energy_mae"] == pytest.approx(0.0, abs=1e-6)
    assert result["orbital_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert result["homo_error"] == pytest.approx(0.0, abs=1e-6)


def test_known_perturbation_gives_known_mae():
    h, _ = _random_problem()
    mask = torch.zeros(6, 6, dtype=torch.bool)
    mask[:2, :2] = True
    perturbed = h.clone()
    perturbed[:2, :2] += 1e-4  # 4 on-site entries off by 100 µEh, the other 32 exact
    result = hamiltonian_mae(perturbed, h, mask)
    assert result["diagonal"] == pytest.approx(100.0)
    assert result["off_diagonal"] == 0.0
    assert result["all"] == pytest.approx(100.0 * 4 / 36)
    # a constant shift c of H moves every orbital energy by c (S-orthonormal orbitals: εS-shift)
    h, s = _random_problem(seed=1)
    shifted = orbital_metrics(h + 2e-5 * s, h, s, n_occ=2)
    assert shifted["orbital_energy_mae"] == pytest.approx(20.0, rel=1e-6)
    assert shifted["homo_error"] == pytest.approx(20.0, rel=1e-6)
    assert shifted["gap_error"] == pytest.approx(0.0, abs=1e-6)
    assert shifted["orbital_cosine"] == pytest.approx(1.0, abs=1e-12)


def test_sign_flips_and_degenerate_rotations_keep_cosine_one():
    h, s = _random_problem(seed=2)
    energies, c = generalized_eigh(h, s)
    # target: orbitals 1 and 2 exactly degenerate
    energies = energies.clone()
    energies[2] = energies[1]
    target = s @ c @ torch.diag(energies) @ c.T @ s
    # prediction: orbital 0 sign-flipped, orbitals 1 and 2 rotated inside their degenerate plane
    # (an equally valid choice) and split by 1e-8 Eh so that its eigensolver returns exactly those
    theta = 0.7
    rot = torch.tensor([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]], dtype=torch.float64)
    c_pred = c.clone()
    c_pred[:, 0] *= -1
    c_pred[:, 1:3] = c[:, 1:3] @ rot
    energies_pred = energies.clone()
    energies_pred[2] += 1e-8
    prediction = s @ c_pred @ torch.diag(energies_pred) @ c_pred.T @ s
    result = orbital_metrics(prediction, target, s, n_occ=3)
    assert result["orbital_cosine"] == pytest.approx(1.0, abs=1e-9)
    # without the degeneracy grouping the rotated pair would score well below one
    assert orbital_metrics(prediction, target, s, n_occ=3, tolerance=0.0)["orbital_cosine"] < 0.95
    # a genuinely different prediction scores below one
    other, _ = _random_problem(seed=5)
    assert orbital_metrics(other, target, s, n_occ=3)["orbital_cosine"] < 0.99


def test_metric_class_accumulates_like_the_functions():
    pairs = [_random_problem(n, seed) for n, seed in [(5, 0), (7, 1)]]
    predictions = [h + 1e-3 * torch.randn_like(h) for h, _ in pairs]
    predictions = [0.5 * (p + p.T) for p in predictions]
    targets, overlaps = [h for h, _ in pairs], [s for _, s in pairs]
    masks = [torch.eye(len(h), dtype=torch.bool) for h in targets]
    metric = HamiltonianMetrics()
    metric.update(predictions[:1], targets[:1], masks[:1], overlaps[:1], [2])
    metric.update(predictions[1:], targets[1:], masks[1:], overlaps[1:], [3])
    values = metric.compute()
    expected = hamiltonian_mae(predictions, targets, masks)
    assert float(values["hamiltonian_mae_all"]) == pytest.approx(expected["all"])
    assert float(values["hamiltonian_mae_diagonal"]) == pytest.approx(expected["diagonal"])
    orbitals = orbital_metrics(predictions, targets, overlaps, [2, 3])
    assert float(values["orbital_energy_mae"]) == pytest.approx(orbitals["orbital_energy_mae"])
    assert float(values["gap_error"]) == pytest.approx(orbitals["gap_error"])
