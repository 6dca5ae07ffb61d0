import numpy as np
import pytest
import torch
from ase import Atoms

from zoo.models import EquivariantBackbone, PropertyModel
from zoo.selection import descriptor_features, model_features


def water(angle_shift=0.0, seed=0):
    atoms = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24 + angle_shift, 0.93, 0]])
    atoms.rotate(37 * seed, "z")
    return atoms


@pytest.mark.parametrize("kind, width, h2_width", [("coulomb", 3, 2), ("inverse-distance", 3, 1)])
def test_descriptors_are_invariant_and_padded(kind, width, h2_width):
    a, b = water(), water(seed=1)
    b.translate([1.0, 2.0, 3.0])
    features = descriptor_features([a, b, Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])], kind)
    assert features.shape == (3, width)
    np.testing.assert_allclose(features[0], features[1], atol=1e-12)
    assert np.all(features[2, h2_width:] == 0)  # the smaller molecule is zero-padded
    assert not np.allclose(descriptor_features([water(0.1)], kind)[0], features[0])


def test_bad_descriptor():
    with pytest.raises(ValueError, match="unknown descriptor"):
        descriptor_features([water()], "soap")


def test_model_features_pool_the_scalar_slices():
    torch.manual_seed(0)
    backbone = EquivariantBackbone(["H", "O"], channels=4, l_max=1, num_layers=1, radial_hidden=8).double()
    model = PropertyModel(backbone, ["energy"])
    structures = [water(), water(seed=2), water(0.2)]
    features = model_features(model, structures, batch_size=2)
    assert features.shape == (3, 4)  # 4 channels of 0e
    np.testing.assert_allclose(features[0], features[1], atol=1e-10)  # rotation-invariant
    summed = model_features(model, structures, pooling="sum")
    np.testing.assert_allclose(summed, 3 * features, atol=1e-10)
    with pytest.raises(TypeError, match="not a PropertyModel-like model"):
        model_features(backbone, structures)
