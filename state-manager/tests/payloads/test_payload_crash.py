"""A server killed with SIGKILL while it writes large payloads, on SQLite and PostgreSQL: after the
restart every stored reference finds its whole payload, and every trigger that was answered has its
run, whose state is handed out with its inputs whole."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from exosphere_testing import ServerProcess, wait_until

from tests.blackbox.helpers import claim_all, node, on_database, register, upsert

SIZE = 2 * 1024 * 1024
WRITERS = 3


def _text(writer: int, number: int) -> str:
    return f"{writer}-{number}-".ljust(SIZE, "z")


def _references(server: ServerProcess) -> list[tuple[str, str, int]]:
    """(run id, key, bytes) of every payload reference in the states' inputs."""

    def read(conn: sa.Connection) -> list[tuple[str, str, int]]:
        found = []
        for run_id, inputs in conn.execute(sa.text("SELECT run_id, inputs FROM states")):
            values = inputs if isinstance(inputs, dict) else json.loads(inputs)
            found += [(run_id, v["payload"], v["bytes"]) for v in values.values() if isinstance(v, dict)]
        return found

    assert server.database_url is not None
    return list(on_database(server.database_url, read))


def _stored(server: ServerProcess, run_id: str, key: str) -> bytes | None:
    assert server.database_url is not None
    if server.database_url.startswith("sqlite"):
        database = server.database_url.removeprefix("sqlite:///")
        try:
            with open(f"{database}-payloads/{run_id}/{key}", "rb") as stored:
                return stored.read()
        except FileNotFoundError:
            return None

    def read(conn: sa.Connection) -> bytes | None:
        row = conn.execute(
            sa.text("SELECT data FROM payloads WHERE run_id = :r AND key = :k"), {"r": run_id, "k": key}
        ).first()
        return bytes(row[0]) if row else None

    result: bytes | None = on_database(server.database_url, read)
    return result


def test_a_kill_mid_write_leaves_no_reference_to_a_missing_payload(
    make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    server = make_server()
    base = f"{server.url}/v0/namespace/{namespace}"
    headers = {"x-api-key": server.api_key}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as api:
        register(api, {"Take": (("big",), ("out",))})
        upsert(api, "take", [node("take", "Take", namespace, {"big": "x"})])

    answered: dict[str, str] = {}  # run id -> its input, for every trigger the server answered
    stop = threading.Event()
    lock = threading.Lock()

    def write(writer: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            number = 0
            while not stop.is_set():
                text = _text(writer, number)
                number += 1
                try:
                    response = client.post("/graph/take/trigger", json={"inputs": {"big": text}})
                except httpx.HTTPError:
                    continue  # the server is gone, or not yet back
                if response.status_code == 200:
                    with lock:
                        answered[response.json()["run_id"]] = text

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(answered) >= 8, what="triggers with large inputs to be answered")
        server.kill()  # mid-write: the writers keep sending
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    server.start()

    references = _references(server)
    assert len(references) >= len(answered) >= 8
    for run_id, key, size in references:
        data = _stored(server, run_id, key)
        assert data is not None, f"state of run {run_id} references payload {key}, which is missing"
        assert len(data) == size and hashlib.sha256(data).hexdigest() == key

    with httpx.Client(base_url=base, headers=headers, timeout=120) as api:
        claimed: list[dict[str, Any]] = claim_all(api, "Take", count=len(references), timeout_s=120)
    inputs = {s["state_id"]: s["inputs"]["big"] for s in claimed}
    assert len(inputs) == len(references) and all(len(text) == SIZE for text in inputs.values())
    assert set(answered.values()) <= set(inputs.values()), "an answered trigger lost its run or its payload"
