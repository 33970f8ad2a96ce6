"""Fixtures: a real `exosphere server` process per test module, on SQLite and on PostgreSQL.

`EXOSPHERE_TEST_BACKENDS` picks the backends (default `sqlite,postgres`); PostgreSQL tests need
`EXOSPHERE_TEST_POSTGRES_URL` (an admin URL; `make test` starts a cluster and sets it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url

BACKENDS = [b.strip() for b in os.environ.get("EXOSPHERE_TEST_BACKENDS", "sqlite,postgres").split(",") if b.strip()]


def database_url(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return sqlite_url(directory)
    admin = os.environ.get("EXOSPHERE_TEST_POSTGRES_URL")
    if not admin:
        pytest.fail("EXOSPHERE_TEST_POSTGRES_URL is not set: run `make test`, or set EXOSPHERE_TEST_BACKENDS=sqlite")
    return fresh_postgres_url(admin)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def make_server(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers on fresh databases of the module's backend; all are stopped at the end."""
    started: list[ServerProcess] = []

    def make(database: str | None = None, **kwargs: object) -> ServerProcess:
        directory = tmp_path_factory.mktemp("server")
        server = ServerProcess(
            database or database_url(backend, directory), log_path=directory / "server.log", **kwargs
        )  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server()


@pytest.fixture
def namespace() -> str:
    """A namespace of its own per test, so tests sharing a server never see each other's work."""
    return "ns-" + uuid.uuid4().hex[:10]


@pytest.fixture
def api(server: ServerProcess, namespace: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=30
    ) as client:
        yield client
