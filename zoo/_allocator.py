"""glibc's allocator tuned for training: freed memory kept for the next step's tensors.

A training step allocates and frees the same large tensors again and again. By default glibc
serves each allocation above a (dynamic) threshold with its own ``mmap`` and returns freed heap
memory to the system, so every step pays system calls and page faults for fresh zeroed pages.
Keeping freed memory (``mallopt``: mmap threshold 32 MiB, trim threshold 1 GiB, top pad 64 MiB)
removes that system time (``benchmarks/allocator.py``, one thread: a float32 Hamiltonian step of
``hamiltonian_qm9_occupied``'s model on 8 QM9 molecules 440 → 355 ms, its system time 18 % → 1 %;
an ethanol force-field step 125 → 116 ms). The ``zoo`` command applies it; call
:func:`keep_freed_memory` to do the same in a notebook or script.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: glibc's mallopt parameters (malloc.h) and the environment variables that set them at start-up
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_VARIABLES = {_M_MMAP_THRESHOLD: "MALLOC_MMAP_THRESHOLD_", _M_TRIM_THRESHOLD: "MALLOC_TRIM_THRESHOLD_",
              _M_TOP_PAD: "MALLOC_TOP_PAD_"}
SETTINGS = {_M_MMAP_THRESHOLD: 32 * 2**20, _M_TRIM_THRESHOLD: 2**30, _M_TOP_PAD: 64 * 2**20}
#: a user's own settings of the same parameters, which win
ENVIRONMENT = tuple(_VARIABLES.values())


def environment() -> dict[str, str]:
    """The same settings as environment variables, for a process that does not import zoo (a
    peer's training in a benchmark gets what zoo's gets)."""
    return {_VARIABLES[parameter]: str(value) for parameter, value in SETTINGS.items()}


def keep_freed_memory() -> bool:
    """Tune glibc's allocator of this process to keep freed memory for reuse (see the module).

    Returns whether it did: not on another system or C library, and not when the environment
    sets any of ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` (the
    user's choice stands). The memory a process holds at its peak is unchanged; between steps
    it keeps up to 1 GiB of freed heap.

    Example::

        >>> import zoo
        >>> zoo.keep_freed_memory() in (True, False)
        True
    """
    if not sys.platform.startswith("linux") or any(name in os.environ for name in ENVIRONMENT):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another C library
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in SETTINGS.items())
