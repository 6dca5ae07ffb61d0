"""The node irreps of the equivariant backbone: ``channels`` copies of each l up to ``l_max``."""

from __future__ import annotations

from e3nn import o3

PARITIES = ("natural", "full")


def hidden_irreps(channels: int, l_max: int, parity: str = "natural") -> o3.Irreps:
    """``channels`` copies of each irrep l <= ``l_max``, sorted by l.

    ``parity="natural"`` keeps the parity (-1)^l of polar tensors (0e, 1o, 2e, ...), which is all
    that functions of positions alone need. ``parity="full"`` adds the pseudo-tensors (1e, 2o, ...)
    for each l > 0: products of two orbital blocks (d ⊗ d in a Hamiltonian) need both.

    >>> hidden_irreps(4, 2, "full")
    4x0e+4x1o+4x1e+4x2o+4x2e
    """
    if parity not in PARITIES:
        raise ValueError(f"parity must be one of {PARITIES}, got {parity!r}")
    if channels < 1 or l_max < 0:
        raise ValueError(f"need channels >= 1 and l_max >= 0, got channels={channels}, l_max={l_max}")
    irreps = [(channels, (0, 1))]
    for l in range(1, l_max + 1):
        parities = [(-1) ** l] if parity == "natural" else [-1, 1]
        irreps += [(channels, (l, p)) for p in parities]
    return o3.Irreps(irreps).sort().irreps

