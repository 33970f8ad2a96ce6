"""The embedded default: one SQLite file in WAL mode, written by one transaction at a time.

SQLite answers from its page cache in microseconds, so statements run right on the event loop:
a thread hop per statement (what an async driver does) costs more than the statement itself. Most
transactions therefore never yield to the loop midway. The few that do (a graph upsert or a node
registration validates, and encodes a large node list, in a worker thread) hold the writer lock,
which keeps every other write transaction waiting until they commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from exosphere_server.private_files import make_private_dir, tighten_database_file
from exosphere_server.storage.base import Storage, decode_json, encode_json
from exosphere_server.storage.migrate import upgrade_connection
from exosphere_server.storage.payloads import FilePayloadStore
from exosphere_server.storage.plain_inserts import plain_insert


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Transactions are begun explicitly (see _begin), not by the driver's implicit BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; NORMAL sync survives a process crash (kill -9) safely.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _begin(conn: sa.Connection) -> None:
    # A writer takes SQLite's write lock up front, so it never fails to upgrade a read lock midway.
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("exosphere_write") else "BEGIN")


# A statement given at least this many rows runs in a worker thread: binding and writing thousands of
# rows (the states of a 10,000-way fan-out) takes long enough to hold up every other request, `/health`
# included. Smaller ones stay on the loop, where they cost less than the hop to a thread.
THREAD_FROM_ROWS = 200
PLAIN_ROWS_PER_CALL = 2000
R = TypeVar("R")


async def _in_thread(function: Callable[..., R], *args: Any) -> R:
    """`function(*args)` in a worker thread, awaited to its end even if this task is cancelled meanwhile:
    the connection it uses must not be closed (or used by the next transaction) while it still runs."""
    running = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.wait([running])
        raise


class _LoopConnection:
    """A sync connection behind the awaitable `execute` that `Tx` uses.

    The connection is this coroutine's alone while it runs (a transaction holds the writer lock), so a
    worker thread may use it in between: the file database is opened without sqlite3's same-thread check.
    """

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self.rows_written = 0  # rows given to statements: a big transaction commits in a worker thread too

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        if isinstance(parameters, list):
            self.rows_written += len(parameters)
            if len(parameters) >= THREAD_FROM_ROWS:
                return await _in_thread(self._conn.execute, statement, parameters)
        plain = plain_insert(statement, parameters, self._conn.dialect)
        if plain is not None:
            driver: sqlite3.Connection = self._conn.connection.dbapi_connection  # type: ignore[assignment]
            try:
                if isinstance(parameters, list):
                    return driver.executemany(plain.sql, [plain.row(p) for p in parameters])
                return driver.execute(plain.sql, plain.row(parameters))
            except sqlite3.Error as exc:
                raise sa.exc.DBAPIError.instance(plain.sql, parameters, exc, sqlite3.Error) from exc
        return self._conn.execute(statement, parameters)

    async def exec_driver_sql(self, sql: str, rows: list[tuple[Any, ...]]) -> Any:
        """`executemany` of plain SQL, in a worker thread from `THREAD_FROM_ROWS` rows as `execute`."""
        self.rows_written += len(rows)
        if len(rows) >= THREAD_FROM_ROWS:
            return await _in_thread(self._conn.exec_driver_sql, sql, rows)
        return self._conn.exec_driver_sql(sql, rows)


class SqliteStorage(Storage):
    def __init__(self, path: Path) -> None:
        super().__init__()
        make_private_dir(path.parent)
        tighten_database_file(path)
        self.path = path
        self.engine = sa.create_engine(
            f"sqlite:///{path}",
            pool_size=4,
            max_overflow=8,
            json_serializer=encode_json,
            json_deserializer=decode_json,
        )
        sa.event.listen(self.engine, "connect", _pragmas)
        sa.event.listen(self.engine, "begin", _begin)
        self._writer = asyncio.Lock()
        # Plain statements of many rows run in a worker thread, and sqlite3 lets the GIL go at every row it
        # writes: larger pieces hold up nobody, and spare a thread hop per 250 rows.
        self.plain_rows_per_call = PLAIN_ROWS_PER_CALL
        # Large payloads as files beside the database, in the same private directory.
        self.payload_store = FilePayloadStore(path.parent / f"{path.name}-payloads")

    def dialect_insert(self, table: sa.Table) -> Any:
        return sqlite_insert(table)

    @property
    def sql_dialect(self) -> sa.Dialect:
        return self.engine.dialect

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[_LoopConnection]:
        async with self._writer:
            with self.engine.connect() as conn:
                transaction = conn.execution_options(exosphere_write=True).begin()
                loop_conn = _LoopConnection(conn)
                try:
                    yield loop_conn
                except BaseException:
                    transaction.rollback()
                    raise
                # Committing the 20,000 rows of a wide fan-out writes megabytes to the WAL: not on the loop.
                if loop_conn.rows_written >= THREAD_FROM_ROWS:
                    await _in_thread(transaction.commit)
                else:
                    transaction.commit()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[_LoopConnection]:
        with self.engine.connect() as conn:
            yield _LoopConnection(conn)
            conn.rollback()

    async def start(self) -> None:
        with self.engine.begin() as conn:
            upgrade_connection(conn)

    async def close(self) -> None:
        self.engine.dispose()
