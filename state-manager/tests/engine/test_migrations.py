"""The Alembic migrations build exactly the schema that the queries are written against (`storage/schema.py`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from exosphere_server.storage import schema
from exosphere_server.storage.migrate import upgrade_connection
from exosphere_testing import fresh_postgres_url
from sqlalchemy.ext.asyncio import create_async_engine


def _migrate_and_compare(conn: sa.Connection) -> list[object]:
    upgrade_connection(conn)
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, schema.metadata))


def test_migrations_equal_the_schema_on_sqlite(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with engine.begin() as conn:
            assert _migrate_and_compare(conn) == []
    finally:
        engine.dispose()


def test_migrations_equal_the_schema_on_postgres() -> None:
    admin = os.environ.get("EXOSPHERE_TEST_POSTGRES_URL")
    if not admin:
        pytest.skip("EXOSPHERE_TEST_POSTGRES_URL is not set (`make test` sets it)")
    url = fresh_postgres_url(admin).replace("postgresql://", "postgresql+asyncpg://", 1)

    async def compare() -> list[object]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(_migrate_and_compare)
        finally:
            await engine.dispose()

    assert asyncio.run(compare()) == []
