"""A database that cannot be reached is a 503 with Retry-After, never a 500; a stop signal answers the
waiting long-polls at once and the server exits cleanly."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from exosphere_server.api.errors import database_unavailable
from exosphere_testing import ServerProcess

from .database import execute


def wait_for_status(call: Callable[[], httpx.Response], status: int, timeout_s: float = 60) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = call()
        if response.status_code == status or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def test_a_stopped_database_is_a_503_with_retry_after_and_service_resumes(
    backend: str, server: ServerProcess, api: httpx.Client
) -> None:
    if backend != "postgres":
        pytest.skip("an embedded SQLite file cannot be stopped apart from the server")
    admin, database = server.database_url.rsplit("/", 1)
    admin_url = admin + "/postgres"
    assert api.get("/graphs/").status_code == 200
    execute(admin_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    execute(admin_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database)
    try:
        for _ in range(3):  # the first call may find a dead pooled connection, the next cannot connect
            response = api.get("/graphs/")
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert "database is unavailable" in response.json()["detail"]
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503 and health.json() == {"message": "database unavailable"}
    finally:
        execute(admin_url, f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    assert wait_for_status(lambda: api.get("/graphs/"), 200).status_code == 200
    assert httpx.get(server.url + "/health").json() == {"message": "OK"}


def test_a_locked_sqlite_file_counts_as_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x INTEGER)")
    holder.execute("BEGIN EXCLUSIVE")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    try:
        with pytest.raises(sa.exc.OperationalError) as caught, engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert database_unavailable(caught.value)
        holder.execute("ROLLBACK")
        with pytest.raises(sa.exc.DBAPIError) as bug, engine.begin() as conn:
            conn.execute(sa.text("SELECT * FROM no_such_table"))
        assert not database_unavailable(bug.value)  # an OperationalError too, but a fault of the statement
    finally:
        holder.close()
        engine.dispose()


def test_sigterm_answers_waiting_long_polls_at_once_and_exits_cleanly(
    make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    server = make_server(log_level="INFO")
    answers: list[httpx.Response] = []
    url = f"{server.url}/v0/namespace/{namespace}/states/enqueue"
    body = {"nodes": ["Nothing"], "batch_size": 1, "wait_ms": 60_000}
    pollers = [
        threading.Thread(
            target=lambda: answers.append(httpx.post(url, json=body, headers={"x-api-key": server.api_key}, timeout=90))
        )
        for _ in range(3)
    ]
    for poller in pollers:
        poller.start()
    _wait_until_waiting(server, 3)
    assert server.process is not None
    process = server.process
    process.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once it has stopped cleanly, as service managers expect.
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    for poller in pollers:
        poller.join(timeout=60)
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all(a.json()["states"] == [] for a in answers)
    assert server.log_path is not None
    log = server.log_path.read_text()
    assert "Traceback" not in log and '"level": "error"' not in log.lower()


def _wait_until_waiting(server: ServerProcess, count: int) -> None:
    """Until the server holds `count` long-polls open (its `exosphere_waiting_requests` gauge)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = httpx.get(server.url + "/metrics", headers={"x-api-key": server.api_key}).text
        for line in text.splitlines():
            if line.startswith("exosphere_waiting_requests ") and float(line.split()[1]) >= count:
                return
        time.sleep(0.1)
    raise AssertionError(f"the server never held {count} long-polls")
