"""A server whose unserved-node wait is one second, and real SDK runtimes in subprocesses."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exosphere_testing import ServerProcess
from exosphere_testing.runtimes import RuntimeProcesses

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
    with RuntimeProcesses(server, APP, namespace, env={"RUN_CONTROL_LOG": str(log_path)}) as processes:
        yield processes.start()
