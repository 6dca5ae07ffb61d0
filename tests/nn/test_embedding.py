import torch

from zoo.nn import ElementEmbedding


def test_same_element_same_features():
    embedding = ElementEmbedding(3, 8)
    features = embedding(torch.tensor([0, 2, 0, 1]))
    assert features.shape == (4, 8) and str(embedding.irreps_out) == "8x0e"
    assert torch.equal(features[0], features[2]) and not torch.equal(features[0], features[1])


def test_equals_linear_map_of_one_hot():
    embedding = ElementEmbedding(3, 4)
    species = torch.tensor([2, 0, 1])
    one_hot = torch.nn.functional.one_hot(species, 3).float()
    assert torch.allclose(embedding(species), one_hot @ embedding.weight)
