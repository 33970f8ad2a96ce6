"""What keeps `/health` quick while a big fan-out runs (docs/benchmarks.md, "`/health` on PostgreSQL during
the fan-out"):

* on PostgreSQL its database check is one statement outside any transaction: during a busy drain every
  round trip waits for a database backend's turn on the CPU, and the BEGIN and ROLLBACK around a pooled
  transaction tripled the wait. Seen in the statements the driver really sends, on a real database;
* a started server has taken the objects it loaded out of the cycle collector's walks, which otherwise
  held the event loop for hundreds of milliseconds at each full collection, and collects less often.
  Seen in a real server's log."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from exosphere_server.storage.postgres import PostgresStorage
from exosphere_testing import ServerProcess, fresh_postgres_url


async def test_the_health_check_sends_one_statement_and_no_transaction(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has no round trips: the check reads the file in the server's own process")
    storage = PostgresStorage(fresh_postgres_url(os.environ["EXOSPHERE_TEST_POSTGRES_URL"]))
    await storage.start()
    sent: list[str] = []
    try:
        await storage.engine.dispose()  # every connection from now on is a new one, with the logger below

        @sa.event.listens_for(storage.engine.sync_engine, "connect")
        def log_queries(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.driver_connection.add_query_logger(lambda logged: sent.append(logged.query))

        for _ in range(3):  # a new connection, then the same one from the pool
            await storage.ping()
        around_pings = list(sent)
        async with storage.reader() as tx:  # reads run in autocommit too: no BEGIN and ROLLBACK around them
            await tx.conn.execute(sa.text("SELECT 1"))
        around_read = sent[len(around_pings) :]
        async with storage.transaction() as tx:  # what the check was before: a pooled connection's transaction
            await tx.conn.execute(sa.text("SELECT 1"))
    finally:
        await storage.close()
    # The driver logs the transaction statements it sends as text (not the prepared `SELECT 1` itself).
    assert around_pings == [], around_pings
    assert around_read == [], around_read
    assert [query.split()[0].rstrip(";").upper() for query in sent] == ["BEGIN", "COMMIT"], sent


def test_a_started_server_has_frozen_the_objects_it_loaded(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server(log_level="INFO")  # started: it has answered /health
    assert server.log_path is not None
    lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    [frozen] = [line for line in lines if line.get("event") == "startup_objects_frozen"]
    # Modules, routes, schemas and metadata: well over 10,000 objects (about 170,000 today).
    assert frozen["objects"] > 10_000, frozen
    assert frozen["young_objects"] == 50_000, frozen  # and it collects less often (exosphere_server.collector)
