"""Real SDK runtimes in subprocesses for the payload tests, killed at the end whatever happened."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from exosphere_testing import ServerProcess
from exosphere_testing.runtimes import RuntimeProcesses

APP = Path(__file__).parent / "runtime_app.py"


@pytest.fixture
def runtimes(server: ServerProcess, namespace: str) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """`runtimes()` starts one more runtime process serving `runtime_app.py`'s nodes."""
    with RuntimeProcesses(server, APP, namespace) as processes:
        yield processes.start
