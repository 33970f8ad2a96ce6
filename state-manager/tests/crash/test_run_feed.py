"""The run change feed across processes: a follower on one PostgreSQL replica hears commits made on another,
and a stopping server ends its streams at once (clients reconnect with Last-Event-ID)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess

from ..blackbox.events import counts, stream
from ..blackbox.helpers import claim_all, executed, node, register, trigger, upsert


def _one_node_graph(api: httpx.Client, namespace: str) -> None:
    register(api, {"Echo": (("text",), ("text",))})
    upsert(api, "echo", [node("echo", "Echo", namespace, {"text": "hi"})])


def _client(server: ServerProcess, namespace: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=70
    )


def test_a_follower_on_one_replica_hears_what_another_replica_commits(
    backend: str, make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; an SQLite file belongs to one server")
    writer = make_server()
    follower = make_server(writer.database_url)
    with _client(writer, namespace) as on_writer, _client(follower, namespace) as on_follower:
        _one_node_graph(on_writer, namespace)
        run_id = trigger(on_writer, "echo")
        waited: dict[str, Any] = {}
        long_poll = threading.Thread(
            target=lambda: waited.update(on_follower.get(f"/run/{run_id}", params={"wait_ms": 60_000}).json())
        )
        with stream(on_follower, run_id) as events:
            assert counts(events.next_event(), "echo") == {"CREATED": 1}
            long_poll.start()
            [state] = claim_all(on_writer, "Echo", count=1)  # a claim is announced too (autocommit, own NOTIFY)
            events.until(lambda e: counts(e, "echo") == {"QUEUED": 1})
            assert executed(on_writer, state, {"text": "done"}).status_code == 200
            end = events.until(lambda e: e.data["finished"])[-1]
            assert (end.event, end.data["status"]) == ("finished", "SUCCESS")
            assert events.ended()
        long_poll.join(timeout=70)
        assert waited["finished"] and waited["status"] == "SUCCESS"  # GET run?wait_ms follows the feed too


def test_a_stopping_server_ends_its_streams_at_once(make_server: Callable[..., ServerProcess], namespace: str) -> None:
    server = make_server()
    with _client(server, namespace) as api:
        _one_node_graph(api, namespace)
        run_ids = [trigger(api, "echo") for _ in range(3)]
        with stream(api, run_ids[0]) as first, stream(api, run_ids[1]) as second, stream(api, run_ids[2]) as third:
            for events in (first, second, third):
                events.next_event()
            assert server.process is not None and server.log_path is not None
            server.process.send_signal(signal.SIGTERM)
            assert first.ended() and second.ended() and third.ended()
            # uvicorn exits by re-raising the signal once it has shut down gracefully
            assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    # Ended by the server, not cut by uvicorn's grace period (5 s) running out.
    assert "timeout graceful shutdown exceeded" not in server.log_path.read_text()
