"""Fixtures of the storage tests: a started storage of the module's backend on a fresh database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from exosphere_server.storage.base import Storage
from exosphere_server.storage.postgres import PostgresStorage
from exosphere_server.storage.sqlite import SqliteStorage
from exosphere_testing import fresh_postgres_url


@pytest.fixture
async def storage(backend: str, tmp_path: Path) -> AsyncIterator[Storage]:
    found: Storage
    if backend == "sqlite":
        found = SqliteStorage(tmp_path / "exosphere.db")
    else:
        found = PostgresStorage(fresh_postgres_url(os.environ["EXOSPHERE_TEST_POSTGRES_URL"]))
    await found.start()
    try:
        yield found
    finally:
        await found.close()
