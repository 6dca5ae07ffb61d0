"""The registry's tests run on the tiny published registry of tests/conftest.py, served by a local Hub.

``local_hub`` serves both models; ``hub_env`` points the Hub client at it with an empty cache.
``evil`` puts on sys.path a package whose import leaves a marker file: loading must never import it.

Every test starts with a fresh memory of unreachable Hubs (the registry keeps it per process, and
a later test may get the port of a server an earlier one stopped). The Hub client's telemetry, which
would ask huggingface.co, is off.
"""

import sys
import textwrap

import pytest
from huggingface_hub import constants

from zoo.publish import LocalHub
from zoo.registry import _hub, _load


@pytest.fixture(autouse=True, scope="session")
def no_telemetry():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")  # for the subprocesses
        patch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)  # read when huggingface_hub was imported
        yield


@pytest.fixture(autouse=True)
def no_endpoint_remembered(monkeypatch):
    monkeypatch.setattr(_hub, "_unreachable_endpoints", {})
    monkeypatch.setattr(_load, "_announced_unreachable", set())


@pytest.fixture(scope="session")
def local_hub(registry, tmp_path_factory):
    """olah on 127.0.0.1 serving both models from deterministic git repos."""
    with LocalHub(registry.manifest, registry.served, tmp_path_factory.mktemp("hub"), port=None) as hub:
        yield hub


@pytest.fixture
def hub_env(local_hub, monkeypatch, tmp_path):
    """HF_ENDPOINT at the local Hub, an empty Hub cache of this test's own; returns the cache."""
    monkeypatch.setenv("HF_ENDPOINT", local_hub.endpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return tmp_path / "hf-cache"


@pytest.fixture
def evil(tmp_path, monkeypatch):
    """A package ``evilmodel`` on sys.path whose import writes a marker file; returns the marker."""
    marker = tmp_path / "imported"
    package = tmp_path / "site" / "evilmodel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(f"""
        import pathlib
        pathlib.Path({str(marker)!r}).write_text("evilmodel ran")

        class Task:
            pass

        def make(*args, **kwargs):
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "evilmodel", raising=False)
    yield marker
    sys.modules.pop("evilmodel", None)
