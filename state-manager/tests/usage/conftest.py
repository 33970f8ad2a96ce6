"""Real SDK runtimes in subprocesses for the usage, priority and budget tests, killed at the end."""

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


from tests.cli.conftest import cli  # noqa: E402,F401  (`exosphere` as a subprocess, for `run show`)
