"""SQLite's plain inserts (`storage/sqlite.py`, run on the sqlite3 connection, not through SQLAlchemy's
execution layer) write the same rows SQLAlchemy writes, read back the same, and fail as SQLAlchemy does."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from exosphere_server.storage import schema
from exosphere_server.storage.base import INSERT_RUN
from exosphere_server.storage.records import RunRecord
from exosphere_server.storage.sqlite import SqliteStorage


def _run(run_id: str, budget: dict[str, object] | None) -> RunRecord:
    return RunRecord(run_id, "ns", "g", 3, {"k": "v", "ü": "\u2603"}, created_at=1_000, priority=2, budget=budget)


async def _stored_text(storage: SqliteStorage, run_id: str) -> tuple[object, ...]:
    """The row as SQLite holds it (JSON as its text), not as SQLAlchemy decodes it."""
    async with storage.reader() as tx:
        row = (await tx.conn.execute(sa.text("SELECT * FROM runs WHERE run_id = :r"), {"r": run_id})).one()
    return tuple(row)[1:]  # all but the run id


async def test_a_plain_insert_writes_what_sqlalchemy_writes_and_reads_back_equal(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    try:
        for budget in ({"max_cost_usd": 1.5, "max_tokens": 10}, None):
            plain, through_sqlalchemy = _run(f"plain-{budget}", budget), _run(f"sa-{budget}", budget)
            async with storage.transaction() as tx:
                await tx.insert_runs([plain])
                # The same statement through SQLAlchemy's own execution, for comparison.
                tx.conn._conn.execute(INSERT_RUN, [{**vars(through_sqlalchemy)}])
            assert await _stored_text(storage, plain.run_id) == await _stored_text(storage, through_sqlalchemy.run_id)
            async with storage.reader() as tx:
                assert await tx.get_run(plain.run_id) == plain
    finally:
        await storage.close()


async def test_a_plain_insert_that_breaks_a_constraint_raises_sqlalchemys_error_and_rolls_back(
    tmp_path: Path,
) -> None:
    """The API's error table maps SQLAlchemy's `DBAPIError`s (a locked database is a 503): the plain
    path raises those, not sqlite3's own."""
    storage = SqliteStorage(tmp_path / "exosphere.db")
    await storage.start()
    try:
        async with storage.transaction() as tx:
            await tx.insert_runs([_run("r1", None)])
        with pytest.raises(sa.exc.IntegrityError):
            async with storage.transaction() as tx:
                await tx.insert_runs([_run("r2", None)])
                await tx.insert_runs([_run("r1", None)])
        async with storage.reader() as tx:
            ids = {row.run_id for row in await tx.conn.execute(sa.select(schema.runs.c.run_id))}
        assert ids == {"r1"}
    finally:
        await storage.close()
