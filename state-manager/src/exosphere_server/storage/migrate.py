"""Alembic migrations, applied at start on the server's own connection."""

from __future__ import annotations

from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"
log = structlog.get_logger("exosphere.storage")


def upgrade_connection(connection: Connection) -> None:
    """Bring the schema to the newest revision on an open connection."""
    before = MigrationContext.configure(connection).get_current_revision()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    after = MigrationContext.configure(connection).get_current_revision()
    # One line when the schema changed (a new database, an upgrade), none on an ordinary start; Alembic's
    # own narration is kept for DEBUG (logs.py).
    if before != after:
        log.info("database_migrated", from_revision=before, to_revision=after)


async def upgrade_to_head(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(upgrade_connection)
