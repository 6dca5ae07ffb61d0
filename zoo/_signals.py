"""Stop signals as interrupts: a command stopped by its scheduler unwinds like one stopped by Ctrl-C.

By default SIGTERM (``kill``, a batch system at its time limit, systemd) and SIGHUP (the terminal
closed) end Python at once: ``with`` blocks do not unwind, so a command's Dask workers or olah
are left to die on their own and the user is told nothing. Inside :func:`stops_interrupt` they,
and Ctrl-C's SIGINT, raise :class:`StopSignal`, a :class:`KeyboardInterrupt`, so whatever handles
Ctrl-C handles them. A signal the process was started to ignore (``nohup``, a background job's
SIGINT) stays ignored.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class StopSignal(KeyboardInterrupt):
    """A stop signal received; ``str()`` is the signal's name and :attr:`exit_status` 128 + its number."""

    def __init__(self, number: int):
        super().__init__(signal.Signals(number).name)
        self.exit_status = 128 + int(number)


class _Deferral:
    """How many :func:`stops_deferred` blocks the main thread is in, and the signal that waits."""

    depth = 0
    pending: int | None = None


_deferral = _Deferral()


def _raise_stop(number, frame) -> None:
    signal.signal(number, signal.SIG_IGN)  # a second one must not interrupt the unwinding
    if _deferral.depth:
        _deferral.pending = number
        return
    raise StopSignal(number)


@contextlib.contextmanager
def stops_deferred() -> Iterator[None]:
    """Within :func:`stops_interrupt`, a stop signal that arrives in this block is raised when it
    ends: for steps that must not be cut in two (a Dask cluster half started is left to Dask's
    exit hook, which fails on it)."""
    _deferral.depth += 1
    try:
        yield
    finally:
        _deferral.depth -= 1
        if not _deferral.depth and _deferral.pending is not None:
            number, _deferral.pending = _deferral.pending, None
            raise StopSignal(number)


@contextlib.contextmanager
def stops_interrupt() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise :class:`StopSignal` in the main thread,
    except those the process ignores.

    The previous handlers come back when the block ends. Outside the main thread (where Python
    cannot set handlers) the block runs unchanged.

    Example:
        >>> import os
        >>> with stops_interrupt():
        ...     try:
        ...         os.kill(os.getpid(), signal.SIGTERM)
        ...     except KeyboardInterrupt as stop:
        ...         print(f"stopped by {stop}, exit status {stop.exit_status}")
        stopped by SIGTERM, exit status 143
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, _raise_stop) for number in STOP_SIGNALS
                if signal.getsignal(number) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stops_cleanly(command: str, after: str) -> Callable:
    """Decorate a command's ``main(argv) -> exit status`` so that a stop signal ends it cleanly: the
    ``with`` blocks unwind, one line says ``<command>: stopped (<signal>); <after>``, and the exit
    status is 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM)."""

    def decorate(main: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(main)
        def run(argv: list[str] | None = None) -> int:
            try:
                with stops_interrupt():
                    return main(argv)
            except StopSignal as stop:
                print(f"{command}: stopped ({stop}); {after}", file=sys.stderr)
                return stop.exit_status

        return run

    return decorate
