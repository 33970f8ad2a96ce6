"""A real SDK runtime in a subprocess for the live stream tests, killed at the end whatever happened."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until

APP = Path(__file__).parent / "runtime_app.py"


@pytest.fixture
def runtime(server: ServerProcess, namespace: str, api: httpx.Client, tmp_path: Path) -> Iterator[Path]:
    """A runtime serving `runtime_app.py`'s nodes, registered; yields its scratch directory."""
    env = {
        **os.environ,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "STREAMS_DIR": str(tmp_path),
        "EXOSPHERE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, str(APP), namespace], env=env)
    try:
        wait_until(lambda: api.get("/nodes/").json()["count"] == 2, what="the runtime to register")
        yield tmp_path
    finally:
        process.kill()
        process.wait()
