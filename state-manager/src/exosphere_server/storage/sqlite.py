"""The embedded default: one SQLite file in WAL mode, written by one transaction at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import create_async_engine

from exosphere_server.storage.base import Storage
from exosphere_server.storage.migrate import upgrade_to_head


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; NORMAL sync survives a process crash (kill -9) safely.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class SqliteStorage(Storage):
    """SQLite serialises writers anyway; an in-process lock makes that explicit and avoids SQLITE_BUSY."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}", pool_size=8, max_overflow=8)
        sa.event.listen(engine.sync_engine, "connect", _pragmas)
        super().__init__(engine)
        self.path = path
        self._writer = asyncio.Lock()

    def dialect_insert(self, table: sa.Table) -> Any:
        return sqlite_insert(table)

    def _write_slot(self) -> asyncio.Lock:
        return self._writer

    async def start(self) -> None:
        await upgrade_to_head(self.engine)
