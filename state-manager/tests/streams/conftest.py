"""A real SDK runtime in a subprocess for the live stream tests, killed at the end whatever happened."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until

APP = Path(__file__).parent / "runtime_app.py"


@contextlib.contextmanager
def running_runtime(server: ServerProcess, namespace: str, directory: Path) -> Iterator[Path]:
    """A runtime serving `runtime_app.py`'s nodes against `server`, registered; yields `directory`."""
    env = {
        **os.environ,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "STREAMS_DIR": str(directory),
        "EXOSPHERE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, str(APP), namespace], env=env)
    headers = {"x-api-key": server.api_key}
    try:
        with httpx.Client(base_url=f"{server.url}/v0/namespace/{namespace}", headers=headers, timeout=30) as api:
            wait_until(lambda: api.get("/nodes/").json()["count"] == 2, what="the runtime to register")
        yield directory
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def runtime(server: ServerProcess, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """A runtime serving `runtime_app.py`'s nodes on the module's server; yields its scratch directory."""
    with running_runtime(server, namespace, tmp_path) as directory:
        yield directory
