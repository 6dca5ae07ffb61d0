"""Equivariant building blocks on e3nn: radial bases, embeddings, convolutions, gates, product bases,
interactions, heads."""

from zoo.nn._ao_blocks import AOBlockExpansion, coupled_irreps
from zoo.nn._channelwise import ChannelwiseTensorProduct, depthwise_tensor_product
from zoo.nn._convolution import DepthwiseConvolution
from zoo.nn._cutoff import PolynomialCutoff
from zoo.nn._denoising_head import DenoisingHead
from zoo.nn._embedding import ElementEmbedding
from zoo.nn._gate import EquivariantGate
from zoo.nn._interaction import Interaction
from zoo.nn._irreps import PARITIES, hidden_irreps
from zoo.nn._linear import ElementLinear
from zoo.nn._mlp import RadialMLP
from zoo.nn._product_basis import ManyBodyInteraction, ProductBasis
from zoo.nn._radial import RADIAL_BASES, BesselBasis, GaussianBasis, RadialEmbedding

__all__ = [
    "AOBlockExpansion",
    "BesselBasis",
    "ChannelwiseTensorProduct",
    "DenoisingHead",
    "DepthwiseConvolution",
    "ElementEmbedding",
    "ElementLinear",
    "EquivariantGate",
    "GaussianBasis",
    "Interaction",
    "ManyBodyInteraction",
    "PARITIES",
    "PolynomialCutoff",
    "ProductBasis",
    "RADIAL_BASES",
    "RadialEmbedding",
    "RadialMLP",
    "coupled_irreps",
    "depthwise_tensor_product",
    "hidden_irreps",
]
