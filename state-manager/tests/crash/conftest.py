"""Runtime processes for crash tests, killed at the end whatever happened."""

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
def runtimes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(
        server: ServerProcess, namespace: str, *mode: str, log_path: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """`log_path`: the runtime's log at INFO goes there (otherwise WARNING and above, to the console)."""
        env = {
            **os.environ,
            "EXOSPHERE_STATE_MANAGER_URI": server.url,
            "EXOSPHERE_API_KEY": server.api_key,
            "CRASH_LOG": str(tmp_path / "executions.log"),
            "EXOSPHERE_LOG_LEVEL": "INFO" if log_path else "WARNING",
        }
        output = open(log_path, "ab") if log_path else None  # noqa: SIM115
        process = subprocess.Popen([sys.executable, str(APP), namespace, *mode], env=env, stdout=output, stderr=output)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()
