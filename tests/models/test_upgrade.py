"""Models saved by an older zoo load into today's (zoo.models._upgrade, the one upgrade function)."""

import pytest
import torch

from zoo.models import EquivariantBackbone, ForceFieldModel, HamiltonianModel
from zoo.nn import ChannelwiseTensorProduct


def _force_field():
    return ForceFieldModel(EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=2, interaction="many_body"),
                           hidden=8)


def _hamiltonian():
    return HamiltonianModel(EquivariantBackbone(["H", "O"], channels=4, l_max=2, num_layers=1, parity="full"),
                            head_channels=4)


def _as_saved_with_e3nn_products(model) -> dict:
    """The model's state dict as zoo < 0.2 saved it, when its channelwise products were e3nn
    TensorProducts: an output mask, Wigner 3j constants, and an empty weight where the weights
    were passed in."""
    state = dict(model.state_dict())
    for name, module in model.named_modules():
        if isinstance(module, ChannelwiseTensorProduct):
            state[f"{name}.output_mask"] = torch.ones(module.irreps_out.dim)
            state[f"{name}._compiled_main_left_right._w3j_1_1_2"] = torch.zeros(3, 3, 5)
            if module.weights_per_sample:
                state[f"{name}.weight"] = torch.zeros(0)
    return state


@pytest.mark.parametrize("build", [_force_field, _hamiltonian])
def test_a_model_saved_with_e3nn_products_loads_strictly(build):
    torch.manual_seed(0)
    saved = build()
    old = _as_saved_with_e3nn_products(saved)
    assert len(old) > len(saved.state_dict())
    torch.manual_seed(1)
    loaded = build()
    loaded.load_state_dict(old, strict=True)
    for key, value in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    # a product's own weights (the Hamiltonian's on-site square) are kept, not dropped
    own = [name for name, m in saved.named_modules() if isinstance(m, ChannelwiseTensorProduct) and not m.weights_per_sample]
    assert all(f"{name}.weight" in saved.state_dict() for name in own)
