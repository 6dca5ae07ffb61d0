"""H[D] against PySCF, its response-kernel backward against finite differences, and the
self-consistency residual at and away from the SCF solution."""

from functools import lru_cache

import numpy as np
import pytest
import torch

from zoo.qc.fock import FockBuilder, build_fock_list
from zoo.qc.level import LevelOfTheory

WATER = ([8, 1, 1], [[0.0, 0.0, 0.117], [0.0, 0.757, -0.469], [0.0, -0.757, -0.469]])
LEVELS = {
    "rhf": LevelOfTheory(method="rhf", xc=None, basis="sto-3g"),
    "lda": LevelOfTheory(xc="lda,vwn", basis="sto-3g", grid_level=1),
    "b3lyp5": LevelOfTheory(xc="b3lyp5", basis="6-31g", grid_level=1),
}

pytestmark = pytest.mark.usefixtures("pyscf_one_thread")



@lru_cache(maxsize=None)
def _converged(name):
    builder = FockBuilder(WATER, LEVELS[name])
    builder.mf.conv_tol = 1e-12
    builder.mf.kernel()
    assert builder.mf.converged
    return builder


@pytest.mark.parametrize("name", list(LEVELS))
def test_fock_at_scf_density_equals_pyscf(name):
    builder = _converged(name)
    density = torch.as_tensor(builder.mf.make_rdm1())
    fock = builder.build(density)
    np.testing.assert_allclose(fock.numpy(), builder.mf.get_fock(), atol=1e-6)
    assert fock.dtype == torch.float64 and fock.shape == (builder.n_ao, builder.n_ao)


@pytest.mark.parametrize("name", list(LEVELS))
def test_backward_matches_central_differences(name):
    builder = _converged(name)
    dm = builder.mf.make_rdm1()
    weight = np.random.default_rng(0).normal(size=dm.shape)
    density = torch.tensor(dm, requires_grad=True)
    (torch.as_tensor(weight) * builder.build(density)).sum().backward()
    step = 1e-4
    for i, j in [(0, 0), (0, 3), (2, 5), (4, 6), (1, 1)]:
        e = np.zeros_like(dm)
        e[i, j] = e[j, i] = step
        up, down = builder.fock_numpy(dm + e), builder.fock_numpy(dm - e)
        numeric = ((weight * up).sum() - (weight * down).sum()) / (2 * step)
        analytic = density.grad[i, j] + density.grad[j, i] if i != j else density.grad[i, i]
        assert abs(float(analytic) - numeric) < 1e-7 * max(1.0, abs(numeric))


def test_self_consistency_residual_vanishes_only_at_scf():
    builder = _converged("lda")
    fock = torch.as_tensor(builder.mf.get_fock())
    assert builder.self_consistency_residual(fock).abs().max() < 1e-5
    noise = torch.as_tensor(np.random.default_rng(1).normal(size=fock.shape))
    perturbed = fock + 1e-2 * (noise + noise.T)
    assert builder.self_consistency_residual(perturbed).abs().max() > 1e-3


def test_residual_gradient_through_eigensolver_and_fock():
    builder = _converged("rhf")
    fock = torch.as_tensor(builder.mf.get_fock())
    noise = torch.as_tensor(np.random.default_rng(2).normal(size=fock.shape))
    start = (fock + 1e-2 * (noise + noise.T)).requires_grad_()

    def f(h):
        return builder.self_consistency_residual(0.5 * (h + h.mT)).square().sum()

    assert torch.autograd.gradcheck(f, (start,), eps=1e-6, atol=1e-6)


def test_build_fock_list_and_input_checks():
    builders = [_converged("rhf"), _converged("lda")]
    densities = [torch.as_tensor(b.mf.make_rdm1()) for b in builders]
    focks = build_fock_list(builders, densities)
    np.testing.assert_allclose(focks[1].numpy(), builders[1].mf.get_fock(), atol=1e-6)
    with pytest.raises(ValueError, match="PySCF AO order"):
        builders[0].build(torch.zeros(3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="basis"):
        FockBuilder(builders[0].mol, LevelOfTheory(basis="def2-svp"))


def test_builders_keep_their_memory_headroom_as_the_process_grows(monkeypatch):
    from pyscf import lib

    level = LevelOfTheory(xc="b3lyp5", basis="6-31g", grid_level=1, density_fitting=True)
    reference = FockBuilder(WATER, level)
    density = reference.mf.get_init_guess(key="minao")
    expected = reference.mf.get_fock(dm=density)

    # a builder made when the process was small: its PySCF budget is now below what the process
    # holds, so PySCF alone would put the DF tensors on disk and loop over them in tiny blocks
    monkeypatch.setattr(lib.param, "MAX_MEMORY", 100)
    builder = FockBuilder(WATER, level)
    builder.mf.max_memory = builder.mf.with_df.max_memory = 100
    assert lib.current_memory()[0] > 100
    np.testing.assert_allclose(builder.fock_numpy(density), expected, atol=1e-8)
    assert isinstance(builder.mf.with_df._cderi, np.ndarray)  # in memory
    assert builder.mf.max_memory > lib.current_memory()[0] > 100
