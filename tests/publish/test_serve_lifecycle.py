"""`zoo hub serve` owns its olah: a busy port is refused up front, the server is announced only once
it answers, and stopping the command (SIGTERM, or SIGKILL on Linux) stops olah and frees the port."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from zoo.publish import LocalHub
from zoo.publish._server import check_port_free, free_port
from zoo.publish.commands import hub_main
from zoo.registry import RegistryError

pytest.importorskip("olah", reason="the local Hub needs olah: pip install olah")
if shutil.which("git") is None or os.name != "posix":
    pytest.skip("the local Hub needs git; these tests send POSIX signals", allow_module_level=True)


def _where(registry) -> list[str]:
    return ["--manifest", str(registry.root / "checkpoints.json"), "--models-dir", str(registry.served)]


def test_a_busy_port_is_refused_before_anything_starts(registry, tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert hub_main(["serve", "--port", str(port), "--workdir", str(tmp_path), *_where(registry)]) == 1
        assert re.search(f"port {port} on 127.0.0.1 is already in use.*--port {port + 1}", capsys.readouterr().err)
        with pytest.raises(RegistryError, match=f"port {port} .* already in use"):
            LocalHub(registry.manifest, registry.served, tmp_path, port=port).start()
    assert not (tmp_path / "mirrors").exists()  # refused before building anything


def _wait_until_free(port: int, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            check_port_free("127.0.0.1", port)
            return
        except RegistryError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_stopping_the_command_stops_olah(registry, tmp_path, stop):
    if stop == "SIGKILL" and not sys.platform.startswith("linux"):
        pytest.skip("olah dies with its parent by PR_SET_PDEATHSIG, a Linux feature")
    port = free_port()
    command = [sys.executable, "-m", "zoo.cli", "hub", "serve", "--port", str(port), "--workdir", str(tmp_path),
               *_where(registry)]
    serve = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or not lines[-1].startswith("local Hub at"):
            line = serve.stdout.readline()
            assert line, f"zoo hub serve exited: {serve.wait()} {serve.stderr.read()}"
            lines.append(line)
        # announced only once it serves the models
        name, revision = lines[0].split()[1], lines[0].split()[3]
        repo_id = registry.entries[name]["repo_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models/{repo_id}/revision/{revision}") as answer:
            assert json.load(answer)["sha"] == revision
        serve.send_signal(getattr(signal, stop))
        code = serve.wait(timeout=30)
    finally:
        serve.kill()
        serve.wait()
    if stop == "SIGTERM":
        assert code == 0 and "zoo hub serve: stopped (SIGTERM)" in serve.stderr.read()
    _wait_until_free(port)  # olah is gone with it, whichever way it was stopped
