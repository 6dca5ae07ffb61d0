"""Channel-by-channel tensor products as dense contractions.

e3nn's :class:`~e3nn.o3.TensorProduct` runs one small kernel per path, and on a CPU the slicing
around them (and its backward, which allocates a zero tensor per slice) costs more than the
arithmetic. The products of zoo's layers are channelwise, so the same function is a contraction
of each channel with a dense tensor of Clebsch–Gordan coefficients: a matrix product for all
paths at once (or for all paths of a pair of input irreps, where the coupling is sparse).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from e3nn import o3

class ChannelwiseTensorProduct(torch.nn.Module):
    r"""``x ⊗ y`` channel by channel, every path weighted: e3nn's ``TensorProduct`` with
    ``"uuu"`` or ``"uvu"`` instructions, computed as one dense contraction.

    For channel u and path p coupling irrep :math:`l_1` of ``x``, :math:`l_2` of ``y`` to output
    irrep :math:`l`,

    .. math::

        \mathrm{out}_{u,l} \mathrel{+}= \alpha_p \, w_{u,p} \sum_{m_1 m_2}
            C^{l_1 l_2 l}_{m_1 m_2 m} \, x_{u,l_1 m_1} \, y_{(u),l_2 m_2},

    with e3nn's Wigner 3j symbols C and its default normalisation α ("component" irreps, "element"
    paths). The function, the weights' layout (``[n, path, channel]`` flattened) and the irreps'
    layouts are e3nn's, so it is a drop-in replacement: the tests compare the two. A "uuu" product
    whose paths each have their own output (:func:`depthwise_tensor_product`) contracts one block
    per pair of input irreps instead, which skips the zeros of a sparse coupling (:meth:`_blocks`).

    Args:
        irreps_in1: irreps of ``x``, every irrep with the same multiplicity (the channels).
        irreps_in2: irreps of ``y``: the channels' multiplicity (``"uuu"``) or 1 (``"uvu"``).
        irreps_out: output irreps, every irrep with the channels' multiplicity.
        instructions: the paths ``(i_in1, i_in2, i_out)``, indices into the three irreps.
        weights_per_sample: the weights are :meth:`forward`'s argument, one row per sample
            (e.g. from a radial MLP); otherwise the module's own parameter ``weight``.

    >>> irreps = o3.Irreps("4x0e+4x1o")
    >>> product = ChannelwiseTensorProduct(irreps, irreps, irreps, [(0, 0, 0), (1, 1, 0), (0, 1, 1)])
    >>> product(torch.randn(5, 16), torch.randn(5, 16), torch.randn(5, product.weight_numel)).shape
    torch.Size([5, 16])
    """

    def __init__(self, irreps_in1, irreps_in2, irreps_out, instructions: Iterable[Sequence[int]],
                 weights_per_sample: bool = True):
        super().__init__()
        self.irreps_in1, self.irreps_in2, self.irreps_out = o3.Irreps(irreps_in1), o3.Irreps(irreps_in2), o3.Irreps(irreps_out)
        self.instructions = [tuple(int(i) for i in instruction) for instruction in instructions]
        self.channels = _channels(self.irreps_in1, "irreps_in1")
        if _channels(self.irreps_out, "irreps_out") != self.channels:
            raise ValueError(f"irreps_out {self.irreps_out} must have the channels of irreps_in1 {self.irreps_in1}")
        mul2 = _channels(self.irreps_in2, "irreps_in2")
        if mul2 not in (1, self.channels):
            raise ValueError(f"irreps_in2 {self.irreps_in2} needs multiplicity 1 (uvu) or {self.channels} (uuu)")
        self.mode = "uvu" if mul2 == 1 and self.channels > 1 else "uuu"
        for i1, i2, i_out in self.instructions:
            ir1, ir2, ir = self.irreps_in1[i1].ir, self.irreps_in2[i2].ir, self.irreps_out[i_out].ir
            if ir not in ir1 * ir2:
                raise ValueError(f"path {ir1} x {ir2} -> {ir} is not allowed by angular momentum and parity")
        self.weight_numel = len(self.instructions) * self.channels
        self.weights_per_sample = bool(weights_per_sample)
        if not self.weights_per_sample:
            self.weight = torch.nn.Parameter(torch.randn(self.weight_numel))

        # plain ints, read per call (compiled code must not read e3nn's Irreps: torch.compile's guards fail on them)
        self._dims = tuple(tuple(ir.dim for _, ir in irreps) for irreps in (self.irreps_in1, self.irreps_in2, self.irreps_out))
        self._muls = (self.channels, mul2)
        coefficients, owner = self._coefficients()
        # [paths, columns]: spreads each path's weight over the columns it owns
        spread = torch.nn.functional.one_hot(owner, len(self.instructions) + 1)[:, :-1].T.double()
        constants, self._groups = {"coefficients": coefficients, "spread": spread}, ()
        if self.mode == "uuu":
            blocks = self._blocks(coefficients, spread)
            if blocks is not None:
                constants, self._groups = blocks
        # the exact float64 master copies; the buffers follow the module's dtype (see _apply)
        self._constants64 = constants
        for name, value in self._constants64.items():
            self.register_buffer(name, value.to(torch.get_default_dtype()), persistent=False)

    def _coefficients(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The dense coefficients ``[D1 * D2, S * D_out]`` and which path owns each of their
        ``S * D_out`` columns (``len(instructions)``: none).

        Paths into the same output irrep go to different "slots" s, so that within a slot every
        output component comes from one path, whose weight then multiplies it.
        """
        d1, d2, d_out = (sum(dims) for dims in self._dims)
        start1, start2, start_out = (_starts(dims) for dims in self._dims)
        # e3nn's normalisation: alpha = dim(out) / (number of paths into that output irrep)
        fan_in = {i_out: sum(1 for *_, o in self.instructions if o == i_out) for *_, i_out in self.instructions}
        slot_of, used = [], {}
        for *_, i_out in self.instructions:
            slot_of.append(used.get(i_out, 0))
            used[i_out] = slot_of[-1] + 1
        slots = max(used.values(), default=1)
        coefficients = torch.zeros(d1, d2, slots, d_out, dtype=torch.float64)
        owner = torch.full((slots, d_out), len(self.instructions), dtype=torch.long)
        for p, ((i1, i2, i_out), slot) in enumerate(zip(self.instructions, slot_of)):
            ir1, ir2, ir = self.irreps_in1[i1].ir, self.irreps_in2[i2].ir, self.irreps_out[i_out].ir
            alpha = math.sqrt(ir.dim / fan_in[i_out])
            block = (slice(start1[i1], start1[i1] + ir1.dim), slice(start2[i2], start2[i2] + ir2.dim), slot,
                     slice(start_out[i_out], start_out[i_out] + ir.dim))
            coefficients[block] = alpha * o3.wigner_3j(ir1.l, ir2.l, ir.l, dtype=torch.float64)
            owner[slot, start_out[i_out]:start_out[i_out] + ir.dim] = p
        return coefficients.reshape(d1 * d2, slots * d_out), owner.flatten()

    def _blocks(self, coefficients: torch.Tensor, spread: torch.Tensor) -> tuple[dict, tuple] | None:
        """For "uuu" products whose paths each have their own output (``depthwise_tensor_product``):
        the coefficients cut into one block per pair of input irreps (its paths' columns), the
        blocks' input ranges, and the weights' spread; ``None`` for other products.

        Taken in order, the blocks' columns are then the outputs, and a dense contraction would
        multiply every component pair by every column: for a Hamiltonian head's square of l <= 2
        into l <= 4 (both parities), 17 times the multiply-adds of the blocks. Paths into shared
        outputs (a product basis: few irreps, few atoms) stay one dense contraction.
        """
        dense = coefficients.view(sum(self._dims[0]), sum(self._dims[1]), -1)
        start1, start2 = _starts(self._dims[0]), _starts(self._dims[1])
        constants, ranges, columns = {}, [], []
        for number, (i1, i2) in enumerate(dict.fromkeys((i1, i2) for i1, i2, _ in self.instructions)):
            rows1 = slice(start1[i1], start1[i1] + self._dims[0][i1])
            rows2 = slice(start2[i2], start2[i2] + self._dims[1][i2])
            block = dense[rows1, rows2]
            used = torch.nonzero(block.abs().sum(dim=(0, 1)) > 0).flatten()
            constants[f"block_{number}"] = block[:, :, used].reshape(-1, used.numel())
            ranges.append((rows1.start, rows1.stop, rows2.start, rows2.stop))
            columns.append(used)
        if not torch.equal(torch.cat(columns), torch.arange(dense.shape[-1])):
            return None
        constants["spread"] = spread
        return constants, tuple(ranges)

    def _apply(self, fn, recurse=True):
        # .double() after a float32 build must give the exact float64 coefficients, not float32 rounding
        super()._apply(fn, recurse)
        for name, exact in self._constants64.items():
            buffer = getattr(self, name)
            setattr(self, name, exact.to(dtype=buffer.dtype, device=buffer.device))
            self._constants64[name] = exact.to(device=buffer.device)
        return self

    def to_channels(self, x: torch.Tensor, operand: int = 1) -> torch.Tensor:
        """An input in e3nn's layout ``[n, irreps_in<operand>.dim]`` -> ``[n, channels, D]``
        (``[n, 1, D2]`` for the second operand of a "uvu" product): the layout :meth:`contract` reads.

        Gathering rows (e.g. of neighbours) commutes with it, so a convolution converts its
        nodes once rather than every edge, and chained products stay in this layout.
        """
        n, channels, dims = x.shape[0], self._muls[operand - 1], self._dims[operand - 1]
        if len(dims) == 1:
            return x.view(n, channels, dims[0])
        blocks = x.split([channels * dim for dim in dims], dim=-1)
        return torch.cat([block.view(n, channels, dim) for block, dim in zip(blocks, dims)], dim=-1)

    def from_channels(self, out: torch.Tensor) -> torch.Tensor:
        """``[n, channels, D_out]`` -> ``[n, irreps_out.dim]`` (e3nn's layout)."""
        n, channels = out.shape[:2]
        if len(self._dims[2]) == 1:
            return out.reshape(n, channels * self._dims[2][0])
        return torch.cat([part.reshape(n, channels * dim) for part, dim in zip(out.split(self._dims[2], dim=-1), self._dims[2])],
                         dim=-1)

    def channel_order(self) -> torch.Tensor:
        """The index that reads e3nn's layout from a flattened channel layout:
        ``from_channels(out) == out.flatten(1)[:, channel_order()]``.

        A caller that reorders the output's features anyway (e.g. grouping equal irreps) folds
        its own permutation into this one and gathers once.
        """
        channels, dims = self.channels, self._dims[2]
        width, parts = sum(dims), []
        for start, dim in zip(_starts(dims), dims):
            parts.append((torch.arange(channels)[:, None] * width + start + torch.arange(dim)[None, :]).flatten())
        return torch.cat(parts)

    def contract(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """The product on channel layouts (:meth:`to_channels`): ``x`` ``[n, channels, D1]``, ``y``
        ``[n, channels or 1, D2]``, ``weight`` as :meth:`forward`'s; returns ``[n, channels, D_out]``."""
        n, channels, d1 = x.shape
        d2 = y.shape[-1]
        weight = self.weight.expand(n, -1) if weight is None else weight
        weight = weight.view(n, len(self.instructions), channels).transpose(1, 2) @ self.spread
        if self._groups:
            return self._contract_blocks(x, y, weight)
        d_out = sum(self._dims[2])
        if self.mode == "uvu":  # y is shared by the channels: fold it into the coefficients first
            folded = self.coefficients.view(d1, d2, -1).transpose(0, 1).reshape(d2, -1)
            products = torch.bmm(x, (y.view(n, d2) @ folded).view(n, d1, folded.shape[1] // d1))
        else:
            pairs = (x.unsqueeze(-1) * y.unsqueeze(-2)).reshape(n * channels, d1 * d2)
            products = (pairs @ self.coefficients).view(n, channels, self.coefficients.shape[1])
        return (products * weight).view(n, channels, self.coefficients.shape[1] // d_out, d_out).sum(dim=2)

    def _contract_blocks(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """:meth:`contract` of "uuu" by blocks, one per pair of input irreps (:meth:`_blocks`)."""
        n, channels = x.shape[:2]
        products = torch.cat([
            (x[:, :, a:b].unsqueeze(-1) * y[:, :, c:e].unsqueeze(-2)).reshape(n, channels, (b - a) * (e - c))
            @ getattr(self, f"block_{k}")
            for k, (a, b, c, e) in enumerate(self._groups)
        ], dim=-1)
        return products * weight

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """``[n, irreps_in1.dim]``, ``[n, irreps_in2.dim]``, weights ``[n, weight_numel]`` (only
        with ``weights_per_sample``) -> ``[n, irreps_out.dim]``."""
        if self.weights_per_sample == (weight is None):
            raise ValueError("pass the weights to forward exactly when the product has weights_per_sample")
        return self.from_channels(self.contract(self.to_channels(x), self.to_channels(y, 2), weight))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.irreps_in1} x {self.irreps_in2} -> {self.irreps_out} | "
                f"{self.mode}, {len(self.instructions)} paths, {self.weight_numel} weights)")


def depthwise_tensor_product(irreps1, irreps2, targets, weights_per_sample: bool = True) -> ChannelwiseTensorProduct:
    """``x ⊗ y`` channel by channel: every path ``ir1 ⊗ ir2 -> ir`` with ``ir`` in ``targets``,
    each path with its own output irrep.

    ``irreps2`` has the channels of ``irreps1`` (``x`` and ``y`` share them, "uuu") or one of each
    irrep (e.g. edge spherical harmonics, "uvu"). Each path keeps ``x``'s multiplicity, so the
    cost grows linearly with the channels rather than quadratically. With ``weights_per_sample``
    the weights come from the caller (e.g. a radial MLP per edge), otherwise they are the
    product's own parameters.
    """
    irreps1, irreps2 = o3.Irreps(irreps1), o3.Irreps(irreps2)
    targets = set(targets)
    irreps_out, instructions = [], []
    for i1, (mul, ir1) in enumerate(irreps1):
        for i2, (_, ir2) in enumerate(irreps2):
            for ir in ir1 * ir2:
                if ir in targets:
                    instructions.append((i1, i2, len(irreps_out)))
                    irreps_out.append((mul, ir))
    return ChannelwiseTensorProduct(irreps1, irreps2, irreps_out, instructions, weights_per_sample)


def _channels(irreps: o3.Irreps, name: str) -> int:
    muls = {mul for mul, _ in irreps}
    if len(muls) != 1:
        raise ValueError(f"{name} {irreps} must have one multiplicity for every irrep (the channels)")
    return muls.pop()


def _starts(dims: Sequence[int]) -> list[int]:
    """Where each irrep (of these dimensions) starts within one channel's components."""
    return [sum(dims[:k]) for k in range(len(dims))]

