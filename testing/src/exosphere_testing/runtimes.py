"""Runtime apps in subprocesses: scripts that serve nodes with an SDK `Runtime` against a test server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol


class _Server(Protocol):
    url: str
    api_key: str


class RuntimeProcesses:
    """Start runtime processes of one app against `server`; every one is killed when the block ends.

    The app is run as ``python APP *args`` with the server's URL and key in the environment (quiet
    logs), plus `env`. Example::

        with RuntimeProcesses(server, APP, namespace, env={"SIGNALS_LOG": str(log)}) as runtimes:
            runtimes.start()  # one runtime; call again for more
    """

    def __init__(self, server: _Server, app: Path, *args: str, env: Mapping[str, str] | None = None) -> None:
        self._command = [sys.executable, str(app), *args]
        self._env = {
            **os.environ,
            "EXOSPHERE_STATE_MANAGER_URI": server.url,
            "EXOSPHERE_API_KEY": server.api_key,
            "EXOSPHERE_LOG_LEVEL": "WARNING",
            **(env or {}),
        }
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **popen: Any) -> subprocess.Popen[bytes]:
        """One more runtime process; `args` are appended to the app's arguments, `popen` goes to Popen."""
        process = subprocess.Popen([*self._command, *args], env=self._env, **popen)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            process.kill()
            process.wait()

    def __enter__(self) -> RuntimeProcesses:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
