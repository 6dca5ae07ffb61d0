"""zoo.keep_freed_memory: glibc's allocator tuned for training, applied by the zoo command."""

import sys

import pytest

import zoo
from zoo import _allocator, cli

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")


@glibc
def test_it_tunes_glibc_unless_the_user_set_the_same_parameters(monkeypatch):
    for name in _allocator.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert zoo.keep_freed_memory() is True
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert zoo.keep_freed_memory() is False


def test_the_zoo_command_applies_it(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(_allocator, "keep_freed_memory", lambda: calls.append(True) or True)
    assert cli.main(["recipes", "list"]) == 0
    assert calls == [True] and "ethanol_forcefield" in capsys.readouterr().out


def test_its_environment_variables_are_the_same_settings():
    variables = _allocator.environment()
    assert set(variables) == set(_allocator.ENVIRONMENT)
    assert variables["MALLOC_TRIM_THRESHOLD_"] == str(2**30)
