"""Chemical elements: symbols, atomic numbers, and the element-to-index map of a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from ase.data import atomic_numbers as _NUMBER_OF_SYMBOL
from ase.data import chemical_symbols as SYMBOLS

MAX_ATOMIC_NUMBER = len(SYMBOLS) - 1


def atomic_number(element: str | int) -> int:
    """Atomic number of a symbol ("C") or a number (6); unknown elements are an error."""
    if isinstance(element, str):
        if element not in _NUMBER_OF_SYMBOL or element == "X":
            raise ValueError(f"unknown element symbol {element!r}; use a symbol such as 'H', 'C', 'O'")
        return _NUMBER_OF_SYMBOL[element]
    number = int(element)
    if not 1 <= number <= MAX_ATOMIC_NUMBER:
        raise ValueError(f"unknown atomic number {number}; expected 1..{MAX_ATOMIC_NUMBER}")
    return number


def as_atomic_numbers(values) -> torch.Tensor:
    """The atomic numbers of one structure as a long tensor [n_atoms], checked to be real elements.

    Whole numbers stored as floats (``6.0``) are accepted; fractions, symbols and other types are
    an error rather than being truncated to some element.
    """
    array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values)
    if array.dtype.kind not in "iuf":
        raise ValueError(f"atomic numbers must be integers, got dtype {array.dtype} "
                         f"({array.reshape(-1)[:5].tolist()}...); convert symbols with zoo.data.atomic_number")
    array = array.reshape(-1)
    if array.size == 0:
        raise ValueError("a structure needs at least one atom")
    if array.dtype.kind == "f":
        fractional = array[~np.isfinite(array) | (array != np.round(array))]
        if fractional.size:
            raise ValueError(f"atomic numbers must be whole numbers, got {fractional[:10].tolist()}")
    z = torch.as_tensor(array.astype(np.int64))
    bad = z[(z < 1) | (z > MAX_ATOMIC_NUMBER)]
    if bad.numel():
        raise ValueError(f"unknown atomic numbers {sorted(set(bad.tolist()))}; expected 1..{MAX_ATOMIC_NUMBER}")
    return z


class ElementIndex(torch.nn.Module):
    """Maps atomic numbers to 0..n_elements-1 for the elements a model supports.

    An atom of any other element is an error that names the element and the supported ones.
    """

    def __init__(self, elements: Sequence[str | int]):
        super().__init__()
        numbers = sorted({atomic_number(e) for e in elements})
        if not numbers:
            raise ValueError("a model needs at least one element")
        self.atomic_numbers = numbers
        table = torch.full((MAX_ATOMIC_NUMBER + 1,), -1, dtype=torch.long)
        table[numbers] = torch.arange(len(numbers))
        self.register_buffer("table", table, persistent=False)

    @property
    def symbols(self) -> list[str]:
        return [SYMBOLS[z] for z in self.atomic_numbers]

    def __len__(self) -> int:
        return len(self.atomic_numbers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        index = self.table[z]
        if torch.compiler.is_compiling():
            # traced (torch.compile, torch.export): a Python branch on the values would end the
            # graph, so the check becomes an operation of the graph, with a message fixed in advance
            torch._assert_async((index >= 0).all(), f"an element not supported by this model, which knows "
                                f"{', '.join(self.symbols)}; fine-tune a model built with it instead")
            return index
        if (index < 0).any():
            unknown = sorted({SYMBOLS[int(n)] for n in z[index < 0].unique()})
            raise ValueError(
                f"element(s) {', '.join(unknown)} not supported by this model, which knows "
                f"{', '.join(self.symbols)}; use a model whose elements include {', '.join(unknown)} (or train one: "
                "a backbone has no embedding for an element it was not built with)"
            )
        return index


def symbols_of(numbers: Iterable[int]) -> list[str]:
    return [SYMBOLS[int(n)] for n in numbers]
