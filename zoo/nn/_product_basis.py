"""MACE's many-body product basis, and the interaction layer built on it."""

from __future__ import annotations

import torch
from e3nn import o3

from zoo.nn._channelwise import ChannelwiseTensorProduct
from zoo.nn._gate import EquivariantGate
from zoo.nn._interaction import message_layers
from zoo.nn._linear import ElementLinear


class ProductBasis(torch.nn.Module):
    r"""Channel-wise tensor powers of an atomic basis up to ``correlation``, weighted per element.

    With :math:`A_i` the atomic basis of atom i (its aggregated messages, ``k`` channels of each
    irrep), the powers are built by iterated channel-wise ("uuu") tensor products,

    .. math::

        B^{(1)} = A, \qquad
        B^{(\nu)}_{k} = \sum_{\text{paths } l_1 \otimes l_2 \to L} w^{(\nu)}_{z_i, k, \text{path}}
            \left(B^{(\nu-1)}_{k} \otimes A_{k}\right)_{L},

    every product coupled back to the irreps of :math:`A` (Clebsch–Gordan, so each
    :math:`B^{(\nu)}` is exactly equivariant) with one learnable weight per element, channel and
    path, as in MACE's symmetric contraction (Batatia et al. 2022). The output is a linear
    mixing of all channels of :math:`B^{(1)}, \dots, B^{(\text{correlation})}`. :math:`B^{(\nu)}`
    is a polynomial of degree ν in the neighbours' messages, so after a two-body convolution the
    layer has body order ``correlation + 1`` (angles between pairs of neighbours, shapes of triples, ...).

    Coupling each product back to ``l <= l_max`` before the next one factorises the weights of the
    generalised Clebsch–Gordan contraction along the chain; in exchange each power costs one
    node-wise tensor product with a few paths per irrep, per atom rather than per edge.

    Args:
        irreps_in: irreps of the atomic basis: the same multiplicity (channels) for every irrep,
            each irrep once.
        irreps_out: output irreps; irreps absent from the input get zeros.
        correlation: highest power ν (1 leaves the basis linear, 3 is MACE's default).
        num_elements: number of elements (one set of product weights each).
    """

    def __init__(self, irreps_in, irreps_out, correlation: int = 3, num_elements: int = 1):
        super().__init__()
        irreps_in, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_out)
        if correlation < 1:
            raise ValueError(f"correlation must be at least 1, got {correlation}")
        if len({mul for mul, _ in irreps_in}) != 1 or len({ir for _, ir in irreps_in}) != len(irreps_in):
            raise ValueError(f"the atomic basis needs every irrep once with the same multiplicity, got {irreps_in}")
        self.irreps_in, self.irreps_out = irreps_in, irreps_out
        self.correlation, self.num_elements = int(correlation), int(num_elements)
        self.products = torch.nn.ModuleList(
            _channelwise_product(irreps_in, symmetric=nu == 2) for nu in range(2, correlation + 1)
        )
        self.weights = torch.nn.ParameterList(
            torch.nn.Parameter(torch.empty(num_elements, product.weight_numel)) for product in self.products
        )
        self.linear = o3.Linear(irreps_in * correlation, irreps_out)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the products and the linear normalise their paths (e3nn's convention) and expect unit-variance weights
        for weight in self.weights:
            torch.nn.init.normal_(weight)
        torch.nn.init.normal_(self.linear.weight)

    def forward(self, atomic_basis: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """[n_atoms, irreps_in.dim], [n_atoms] element indices -> [n_atoms, irreps_out.dim]."""
        powers = [atomic_basis]
        if self.products:  # the powers stay in the products' channel layout (every product has the same irreps)
            basis = power = self.products[0].to_channels(atomic_basis)
            for product, weight in zip(self.products, self.weights):
                power = product.contract(power, basis, weight[species])
                powers.append(product.from_channels(power))
        return self.linear(torch.cat(powers, dim=-1))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.irreps_in} -> {self.irreps_out} | correlation {self.correlation}, "
                f"{self.num_elements} elements)")


def _channelwise_product(irreps: o3.Irreps, symmetric: bool) -> ChannelwiseTensorProduct:
    """``x ⊗ y`` channel by channel ("uuu"), every path coupled back to an irrep of ``irreps``,
    with per-sample weights (one per channel and path).

    ``symmetric`` marks ``x = y`` (the square of the basis): then the path ``(l2, l1)`` is the
    path ``(l1, l2)`` up to a sign, and a channel times itself coupled antisymmetrically
    (``l1 = l2``, odd ``L``, like a cross product a × a) vanishes, so both are left out.
    """
    instructions = []
    for i1, (_, ir1) in enumerate(irreps):
        for i2, (_, ir2) in enumerate(irreps):
            if symmetric and i2 < i1:
                continue
            for i_out, (_, ir) in enumerate(irreps):
                if ir in ir1 * ir2 and not (symmetric and i1 == i2 and ir.l % 2):
                    instructions.append((i1, i2, i_out))
    return ChannelwiseTensorProduct(irreps, irreps, irreps, instructions)


class ManyBodyInteraction(torch.nn.Module):
    """MACE-style interaction: the two-body messages form each atom's atomic basis, whose
    :class:`ProductBasis` raises the body order; then zoo's self-connection and gate.

    .. code-block:: text

        x ──linear──conv(edges)──linear──A──product basis(element)──(+)──gate──> out
        └──────────────── self-connection(element) ────────────────────┘

    The layer and its arguments are those of :class:`zoo.nn.Interaction` (whose convolution and
    self-connection it shares), with the linear after the convolution mapping to the atomic basis
    ``A`` (the irreps of ``irreps_out``) and the product basis producing the gate's input.

    Args:
        irreps_in: node input irreps.
        irreps_out: node output irreps: scalars first, the same multiplicity for every irrep.
        irreps_sh: irreps of the edge spherical harmonics.
        num_radial: size of the radial embedding.
        radial_hidden: width of the radial MLP.
        avg_num_neighbors: normalises the sum over neighbours.
        num_elements: number of elements (product weights and self-connection per element).
        correlation: highest power of the atomic basis; the layer's body order is one more.
    """

    def __init__(self, irreps_in, irreps_out, irreps_sh, num_radial: int, radial_hidden: int = 64,
                 avg_num_neighbors: float = 10.0, num_elements: int = 1, correlation: int = 3):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.gate = EquivariantGate(irreps_out)
        self.irreps_out = self.gate.irreps_out
        self.linear_in, self.convolution, self.linear_out = message_layers(
            self.irreps_in, irreps_sh, self.irreps_out, num_radial, radial_hidden, avg_num_neighbors
        )
        self.product_basis = ProductBasis(self.irreps_out, self.gate.irreps_in, correlation, num_elements)
        self.self_connection = ElementLinear(self.irreps_in, self.gate.irreps_in, num_elements)

    def reset_parameters(self) -> None:
        for linear in (self.linear_in, self.linear_out):
            torch.nn.init.normal_(linear.weight)  # e3nn's own initialisation
        self.convolution.reset_parameters()
        self.product_basis.reset_parameters()
        self.self_connection.reset_parameters()

    def forward(self, x: torch.Tensor, species: torch.Tensor, edge_index: torch.Tensor,
                edge_sh: torch.Tensor, edge_radial: torch.Tensor) -> torch.Tensor:
        """[n_atoms, irreps_in.dim] -> [n_atoms, irreps_out.dim]; ``species`` are element indices."""
        atomic_basis = self.linear_out(self.convolution(self.linear_in(x), edge_index, edge_sh, edge_radial))
        return self.gate(self.product_basis(atomic_basis, species) + self.self_connection(x, species))
