"""A server whose unserved-node wait is one second, and real SDK runtimes in subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exosphere_testing import ServerProcess

APP = Path(__file__).parent / "runtime_app.py"


@pytest.fixture(scope="module")
def server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    # A short wait, so the "no runtime serves node X" test is quick; it waits for the warning, not a time.
    return make_server(env={"EXOSPHERE_UNSERVED_NODE_SECONDS": "1"})


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "executions.log"
    path.touch()
    return path


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture
def runtime(server: ServerProcess, namespace: str, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "RUN_CONTROL_LOG": str(log_path),
        "EXOSPHERE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, str(APP), namespace], env=env)
    yield process
    process.kill()
    process.wait()
