"""Starts a real Exosphere server (``exosphere server``) on a temporary SQLite file and a free port."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

API_KEY = "integration-secret"


def _exosphere_command() -> list[str]:
    found = shutil.which("exosphere") or str(Path(sys.executable).with_name("exosphere"))
    if not Path(found).exists():
        pytest.skip("the exosphere server is not installed")
    return [found]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("exosphere")
    port = _free_port()
    env = os.environ | {
        "STATE_MANAGER_SECRET": API_KEY,
        "SECRETS_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "EXOSPHERE_DATA_DIR": str(data),
    }
    command = [*_exosphere_command(), "server", "--port", str(port), "--database-url", f"sqlite:///{data}/db.sqlite"]
    log = (data / "server.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"server did not start:\n{(data / 'server.log').read_text()}")
        time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(10)
    log.close()


@pytest.fixture
def env(server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Configure the SDK through the environment, as the user documentation does."""
    monkeypatch.setenv("EXOSPHERE_STATE_MANAGER_URI", server_url)
    monkeypatch.setenv("EXOSPHERE_API_KEY", API_KEY)
    return server_url
