"""Starts a real Exosphere server (``exosphere server``) on a temporary SQLite file and a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from exosphere_testing import ServerProcess, sqlite_url

API_KEY = "integration-secret"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("exosphere")
    with ServerProcess(sqlite_url(data), api_key=API_KEY, log_path=data / "server.log") as process:
        yield process


@pytest.fixture(scope="session")
def server_url(server: ServerProcess) -> str:
    return server.url


@pytest.fixture
def env(server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Configure the SDK through the environment, as the user documentation does."""
    monkeypatch.setenv("EXOSPHERE_STATE_MANAGER_URI", server_url)
    monkeypatch.setenv("EXOSPHERE_API_KEY", API_KEY)
    return server_url
