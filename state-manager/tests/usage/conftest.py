"""Real SDK runtimes in subprocesses for the usage, priority and budget tests, killed at the end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exosphere_testing import ServerProcess

APP = Path(__file__).parent / "runtime_app.py"


@pytest.fixture
def runtimes(server: ServerProcess, namespace: str) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """`runtimes()` starts one more runtime process serving `runtime_app.py`'s nodes."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "EXOSPHERE_STATE_MANAGER_URI": server.url,
            "EXOSPHERE_API_KEY": server.api_key,
            "EXOSPHERE_LOG_LEVEL": "WARNING",
        }
        process = subprocess.Popen([sys.executable, str(APP), namespace], env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()
