import torch

from zoo.nn import RadialMLP


def test_zero_input_gives_zero_weights():
    # what makes messages vanish at the cutoff
    mlp = RadialMLP(8, 16, 5)
    assert mlp(torch.zeros(3, 8)).abs().max() == 0
    assert mlp(torch.randn(3, 8)).shape == (3, 5)


def test_keeps_unit_scale():
    torch.manual_seed(0)
    out = RadialMLP(8, 64, 100)(torch.randn(2000, 8))
    assert 0.3 < out.square().mean() < 3


def test_reset_parameters():
    mlp = RadialMLP(4, 8, 2)
    before = [w.detach().clone() for w in mlp.weights]
    mlp.reset_parameters()
    assert all(not torch.equal(a, b) for a, b in zip(before, mlp.weights))
