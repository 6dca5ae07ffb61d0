"""Point convolution with depthwise ("uvu") tensor products weighted by a radial MLP."""

from __future__ import annotations

import torch
from e3nn import o3
from torch_geometric.utils import scatter

from zoo.nn._channelwise import depthwise_tensor_product
from zoo.nn._mlp import RadialMLP


class DepthwiseConvolution(torch.nn.Module):
    r"""Messages :math:`m_i = \frac{1}{\sqrt{\bar n}} \sum_{j} R(r_{ij}) \, (x_j \otimes Y(\hat r_{ij}))`.

    The tensor product is depthwise ("uvu"): channel u of the neighbour's features only meets the
    spherical harmonics, with one weight per channel and path coming from a radial MLP, instead of
    mixing all channels per edge ("uvw"). The channels are mixed afterwards per node by linear
    layers, which is ~10x cheaper than a fully connected per-edge product at the same width.

    Args:
        irreps_in: node input irreps.
        irreps_sh: irreps of the edge spherical harmonics.
        irreps_target: the output keeps every path whose irrep appears here (multiplicities ignored).
        num_radial: size of the radial embedding.
        radial_hidden: width of the radial MLP.
        avg_num_neighbors: the sum over neighbours is divided by its square root.
    """

    def __init__(self, irreps_in, irreps_sh, irreps_target, num_radial: int, radial_hidden: int = 64,
                 avg_num_neighbors: float = 10.0):
        super().__init__()
        irreps_in, irreps_sh = o3.Irreps(irreps_in), o3.Irreps(irreps_sh)
        if avg_num_neighbors <= 0:
            raise ValueError(f"avg_num_neighbors must be positive, got {avg_num_neighbors}")
        targets = {ir for _, ir in o3.Irreps(irreps_target)}
        self.tensor_product = depthwise_tensor_product(irreps_in, irreps_sh, targets)
        self.radial = RadialMLP(num_radial, radial_hidden, self.tensor_product.weight_numel)
        self.irreps_in, self.irreps_sh = irreps_in, irreps_sh
        self.irreps_out = self.tensor_product.irreps_out
        self.norm = float(avg_num_neighbors) ** -0.5

    def reset_parameters(self) -> None:
        self.radial.reset_parameters()

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_sh: torch.Tensor,
                edge_radial: torch.Tensor) -> torch.Tensor:
        """Node features [n_atoms, irreps_in.dim] -> summed messages [n_atoms, irreps_out.dim].

        ``edge_index[0]`` are the neighbours j, ``edge_index[1]`` the centres i.
        """
        neighbour, centre = edge_index
        product = self.tensor_product
        # in the product's channel layout from the nodes' gather to the sum: converted per node, not per edge
        messages = product.contract(product.to_channels(x)[neighbour], product.to_channels(edge_sh, 2),
                                    self.radial(edge_radial))
        return product.from_channels(scatter(messages, centre, dim=0, dim_size=x.shape[0], reduce="sum") * self.norm)
