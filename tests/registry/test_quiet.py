"""What the registry says, and how long it waits, when the Hub does not answer.

A machine without network must not pay a wait and a warning per model: the first load waits at
most ZOO_HUB_TIMEOUT seconds, says once that the package copies are used, and later loads neither
wait nor say it again. With HF_HUB_OFFLINE=1 nothing is asked and nothing is said.
"""

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import zoo
from zoo.registry import DownloadError, RegistryError, instantiate_task, load_pretrained_weights
from zoo.registry._hub import DEFAULT_TIMEOUT, hub_timeout

TIMEOUT = 2  # seconds, ZOO_HUB_TIMEOUT in these tests; zoo's default is DEFAULT_TIMEOUT


@pytest.fixture
def black_hole(monkeypatch, tmp_path):
    """HF_ENDPOINT at a socket that accepts connections and never answers; returns the endpoint."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # the kernel completes the handshakes; nothing ever reads or writes
        endpoint = f"http://127.0.0.1:{server.getsockname()[1]}"
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.setenv("ZOO_HUB_TIMEOUT", str(TIMEOUT))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        yield endpoint


def _timed(call):
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_silent_endpoint_costs_the_timeout_once_and_one_notice(registry, black_hole, caplog, monkeypatch):
    with caplog.at_level(logging.INFO, logger="zoo.registry"):
        first, waited = _timed(lambda: zoo.load("tiny-ho", manifest=registry.manifest))
        second, again = _timed(lambda: zoo.load("tiny-ho", manifest=registry.manifest))
    assert first.registry_info.folder == second.registry_info.folder == registry.package / "tiny-ho"
    # it waited for the timeout (not the Hub client's 10 s per request), then never again
    assert TIMEOUT * 0.9 <= waited < TIMEOUT + 8 and again < TIMEOUT
    assert _warnings(caplog) == [
        f"zoo: the Hub at {black_hole} is unreachable (ReadTimeout: timed out, no answer within {TIMEOUT} s); "
        "using the models shipped with zoo (set HF_HUB_OFFLINE=1 to skip the check)"
    ]
    # a model without a package copy fails at once, saying why and what to do
    start = time.monotonic()
    with pytest.raises(DownloadError, match=f"cannot reach the Hub at {black_hole}.*not asked again in this "
                                            "process.*ZOO_HUB_TIMEOUT.*HF_HUB_OFFLINE=1"):
        zoo.download("tiny-remote", manifest=registry.manifest)
    assert time.monotonic() - start < TIMEOUT
    # another endpoint is asked afresh
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    with caplog.at_level(logging.INFO, logger="zoo.registry"):
        zoo.download("tiny-ho", manifest=registry.manifest)
    assert "the Hub at http://127.0.0.1:9 is unreachable (ConnectError" in _warnings(caplog)[-1]


_LOADS = textwrap.dedent("""
    import sys, zoo
    from zoo.registry import load_manifest
    manifest = load_manifest(sys.argv[1], sys.argv[2])
    for _ in range(3):
        zoo.download("tiny-ho", manifest=manifest)
""")


@pytest.mark.parametrize("offline", [False, True])
def test_what_a_program_prints_by_default(registry, black_hole, offline):
    """No logging set up, as in a script or a notebook: one line on stderr for three loads, none offline."""
    env = {**os.environ, **({"HF_HUB_OFFLINE": "1"} if offline else {})}
    result = subprocess.run([sys.executable, "-c", _LOADS, str(registry.root / "checkpoints.json"),
                             str(registry.package)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    expected = [] if offline else [f"zoo: the Hub at {black_hole} is unreachable (ReadTimeout: timed out, no answer "
                                   f"within {TIMEOUT} s); using the models shipped with zoo (set HF_HUB_OFFLINE=1 "
                                   "to skip the check)"]
    assert result.stderr.splitlines() == expected


def test_offline_asks_nothing_and_says_nothing(registry, black_hole, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with caplog.at_level(logging.DEBUG, logger="zoo.registry"):
        task, took = _timed(lambda: zoo.load("tiny-ho", manifest=registry.manifest))
    assert task.registry_info.folder == registry.package / "tiny-ho"
    assert took < TIMEOUT and not _warnings(caplog)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_timeout_is_an_error_that_says_the_fix(monkeypatch, value):
    monkeypatch.setenv("ZOO_HUB_TIMEOUT", value)
    with pytest.raises(RegistryError, match=f"ZOO_HUB_TIMEOUT='{value}' is not a number of seconds > 0; set it to"):
        hub_timeout()
    monkeypatch.setenv("ZOO_HUB_TIMEOUT", "0.5")
    assert hub_timeout() == 0.5
    monkeypatch.delenv("ZOO_HUB_TIMEOUT")
    assert hub_timeout() == DEFAULT_TIMEOUT


def test_fine_tuning_says_what_it_loaded(registry, tiny):
    """The confirmation goes where Lightning's own start-up messages go: shown by default, on rank zero."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert rank_zero.isEnabledFor(logging.INFO)
    records = []
    listener = logging.Handler()
    listener.emit = records.append  # on the logger itself: Lightning's loggers may not propagate to the root
    rank_zero.addHandler(listener)
    try:
        load_pretrained_weights(instantiate_task(tiny.config()), registry.served / "tiny-ho")
    finally:
        rank_zero.removeHandler(listener)
    said = [r.getMessage() for r in records]
    assert len(said) == 1 and said[0].startswith(
        "zoo: initialised AtomisticTask from the pretrained weights of 'tiny-ho' (local folder): ")
