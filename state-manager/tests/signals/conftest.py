"""Real SDK runtimes in subprocesses for the signal tests, killed at the end whatever happened."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exosphere_testing import ServerProcess
from exosphere_testing.runtimes import RuntimeProcesses

APP = Path(__file__).parent / "runtime_app.py"


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "executions.log"
    path.touch()
    return path


def log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.fixture
def runtimes(server: ServerProcess, namespace: str, log_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """`runtimes()` starts one more runtime process serving `runtime_app.py`'s nodes."""
    with RuntimeProcesses(server, APP, namespace, env={"SIGNALS_LOG": str(log_path)}) as processes:
        yield processes.start
