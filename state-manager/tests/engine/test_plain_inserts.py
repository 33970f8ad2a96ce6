"""Plain inserts (`storage/plain_inserts.py`: run on the sqlite3 or asyncpg connection, not through
SQLAlchemy's execution layer) write the same rows SQLAlchemy writes, read back the same, answer the same
row counts, and fail as SQLAlchemy does, on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from exosphere_server.api.errors import database_unavailable
from exosphere_server.storage import schema
from exosphere_server.storage.base import INSERT_RUN, Storage
from exosphere_server.storage.postgres import PostgresStorage
from exosphere_server.storage.records import RunRecord
from exosphere_server.storage.sqlite import SqliteStorage


def _run(run_id: str, budget: dict[str, object] | None) -> RunRecord:
    return RunRecord(run_id, "ns", "g", 3, {"k": "v", "ü": "\u2603"}, created_at=1_000, priority=2, budget=budget)


async def _stored_text(storage: Storage, run_id: str) -> tuple[object, ...]:
    """The row as the database holds it (JSON as its text), not as SQLAlchemy decodes it."""
    columns = [
        sa.cast(column, sa.Text) if isinstance(column.type, sa.JSON) else column
        for column in schema.runs.c
        if column.name != "run_id"
    ]
    async with storage.reader() as tx:
        return tuple((await tx.conn.execute(sa.select(*columns).where(schema.runs.c.run_id == run_id))).one())


async def test_a_plain_insert_writes_what_sqlalchemy_writes_and_reads_back_equal(storage: Storage) -> None:
    for budget in ({"max_cost_usd": 1.5, "max_tokens": 10}, None):
        plain, through_sqlalchemy = _run(f"plain-{budget}", budget), _run(f"sa-{budget}", budget)
        async with storage.transaction() as tx:
            await tx.insert_runs([plain])
            # The same statement through SQLAlchemy's own execution, for comparison.
            sa_conn = tx.conn._conn
            written = sa_conn.execute(INSERT_RUN, [{**vars(through_sqlalchemy)}])
            if not isinstance(storage, SqliteStorage):
                await written
        assert await _stored_text(storage, plain.run_id) == await _stored_text(storage, through_sqlalchemy.run_id)
        async with storage.reader() as tx:
            assert await tx.get_run(plain.run_id) == plain


async def test_a_plain_insert_as_the_first_statement_joins_the_transaction(storage: Storage) -> None:
    """On PostgreSQL the plain path begins the transaction itself when it writes first: a failure later
    in the same transaction takes the plain insert back with it."""
    with pytest.raises(RuntimeError):
        async with storage.transaction() as tx:
            await tx.insert_runs([_run("first", None)])
            raise RuntimeError("after the insert")
    async with storage.reader() as tx:
        assert await tx.get_run("first") is None


async def test_a_plain_insert_answers_its_row_count(storage: Storage) -> None:
    """An idempotency key is an `INSERT ... ON CONFLICT DO NOTHING` whose row count says who owns it."""
    async with storage.transaction() as tx:
        assert await tx.take_trigger_key("ns", "g", "k1", "run-a", 1_000, 2_000) == "run-a"
    async with storage.transaction() as tx:
        assert await tx.take_trigger_key("ns", "g", "k1", "run-b", 1_500, 2_500) == "run-a"


async def test_a_plain_insert_that_breaks_a_constraint_raises_sqlalchemys_error_and_rolls_back(
    storage: Storage,
) -> None:
    """The API's error table maps SQLAlchemy's `DBAPIError`s (a locked database or a lost connection is
    a 503): the plain path raises those, not the driver's own."""
    async with storage.transaction() as tx:
        await tx.insert_runs([_run("r1", None)])
    with pytest.raises(sa.exc.IntegrityError):
        async with storage.transaction() as tx:
            await tx.insert_runs([_run("r2", None)])
            await tx.insert_runs([_run("r1", None)])
    async with storage.reader() as tx:
        ids = {row.run_id for row in await tx.conn.execute(sa.select(schema.runs.c.run_id))}
    assert ids == {"r1"}
    async with storage.transaction() as tx:  # the connection is usable again after the failed one
        await tx.insert_runs([_run("r3", None)])


@pytest.mark.parametrize("rows", [1, 2])
async def test_a_connection_lost_under_a_plain_insert_is_database_unavailable_and_the_pool_recovers(
    storage: Storage, rows: int
) -> None:
    """PostgreSQL: the server ends the transaction's connection (as a restart or a failover does); the plain
    insert (one row, or a batch by asyncpg's `executemany`) then fails with the error the API answers 503
    to, as through SQLAlchemy, and the next transaction gets a working connection."""
    if not isinstance(storage, PostgresStorage):
        pytest.skip("a SQLite connection cannot be lost")
    with pytest.raises(Exception) as failed:
        async with storage.transaction() as tx:
            await tx.get_run("nothing")  # the transaction's connection is open
            pid = (await tx.conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
            async with storage.reader() as other:
                await other.conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await tx.insert_runs([_run(f"lost-{i}", None) for i in range(rows)])
    assert database_unavailable(failed.value), repr(failed.value)
    async with storage.transaction() as tx:
        await tx.insert_runs([_run("after", None)])
    async with storage.reader() as tx:
        assert await tx.get_run("after") is not None
        assert await tx.get_run("lost-0") is None
