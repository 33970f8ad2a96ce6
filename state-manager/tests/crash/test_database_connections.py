"""PostgreSQL connections cut mid-run (every backend of the database terminated): nothing is lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from collections.abc import Callable

import asyncpg
import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until

from .test_crash import _graph, _states


async def _terminate_connections(database: str) -> int:
    admin = await asyncpg.connect(os.environ["EXOSPHERE_TEST_POSTGRES_URL"])
    try:
        rows = await admin.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        return len(rows)
    finally:
        await admin.close()


def test_cutting_every_database_connection_mid_run_loses_nothing(
    backend: str,
    server: ServerProcess,
    api: httpx.Client,
    namespace: str,
    runtimes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    if backend != "postgres":
        pytest.skip("SQLite has no connections to cut")
    runtimes(server, namespace)
    wait_until(lambda: api.get("/nodes/").json()["count"] == 4)
    _graph(api, namespace)
    width = 40
    run_id = api.post("/graph/crash/trigger", json={"store": {"width": str(width)}}).json()["run_id"]
    wait_until(lambda: sum(s["identifier"] == "work" and s["status"] == "SUCCESS" for s in _states(api, run_id)) >= 5)
    database = server.database_url.rsplit("/", 1)[1]
    assert asyncio.run(_terminate_connections(database)) > 0
    # A request that meets a cut connection is answered 503 ("retry"), as clients are told to.
    for _ in range(10):
        answer = api.get(f"/run/{run_id}", params={"wait_ms": 60_000}, timeout=70)
        if answer.status_code != 503:
            break
    run = answer.json()
    assert run["finished"] and run["status"] == "SUCCESS", run
    states = _states(api, run_id)
    work = Counter(s["inputs"]["item"] for s in states if s["identifier"] == "work" and s["status"] == "SUCCESS")
    assert work == Counter({str(i): 1 for i in range(width)})
    assert [s["status"] for s in states if s["identifier"] == "merge"] == ["SUCCESS"]
