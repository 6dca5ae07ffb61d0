"""Chemical elements: symbols, atomic numbers, and the element-to-index map of a model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

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


def check_atomic_numbers(z: torch.Tensor) -> None:
    """Raise a clear error if any atomic number is not a real element."""
    if z.numel() == 0:
        raise ValueError("a structure needs at least one atom")
    bad = z[(z < 1) | (z > MAX_ATOMIC_NUMBER)]
    if bad.numel():
        raise ValueError(f"unknown atomic numbers {sorted(set(bad.tolist()))}; expected 1..{MAX_ATOMIC_NUMBER}")


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
        if (index < 0).any():
            unknown = sorted({SYMBOLS[int(n)] for n in z[index < 0].unique()})
            raise ValueError(
                f"element(s) {', '.join(unknown)} not supported by this model, which knows "
                f"{', '.join(self.symbols)}; fine-tune a model built with these elements instead"
            )
        return index


def symbols_of(numbers: Iterable[int]) -> list[str]:
    return [SYMBOLS[int(n)] for n in numbers]
