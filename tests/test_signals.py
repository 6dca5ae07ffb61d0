"""zoo._signals: stop signals become interrupts inside a block, and wait inside a deferred step."""

import doctest
import os
import signal

import pytest

from zoo import _signals
from zoo._signals import StopSignal, stops_deferred, stops_interrupt


def test_docstring_examples():
    assert doctest.testmod(_signals).failed == 0


def test_stop_signals_interrupt_inside_the_block_only():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as stop:  # what handles Ctrl-C handles a stop
        with stops_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
    assert isinstance(stop.value, StopSignal) and stop.value.exit_status == 143 and str(stop.value) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_stop_during_a_deferred_step_is_raised_when_the_step_ends():
    done = []
    with pytest.raises(StopSignal):
        with stops_interrupt():
            with stops_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("the rest of the step")
            done.append("after the step")
    assert done == ["the rest of the step"]


def test_an_ignored_signal_stays_ignored():
    """``nohup`` starts a job with SIGHUP ignored: closing the terminal must not stop it."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stops_interrupt():
            os.kill(os.getpid(), signal.SIGHUP)
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)
