"""StateManager: the wire of trigger/upsert/get, validation polling, and following runs (event streams)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from exospherehost import (
    AuthenticationError,
    CronTrigger,
    GraphNodeModel,
    GraphValidationError,
    NotFoundError,
    RetryPolicyModel,
    RunTimeoutError,
    StateManager,
    StoreConfigModel,
    UnexpectedAnswerError,
)
from fake_server import FakeServer, Reply, Request

pytestmark = pytest.mark.asyncio

NODES = [GraphNodeModel(node_name="Greet", namespace="ns", identifier="greet", inputs={"name": "x"})]


def graph(status: str, errors: list[str] | None = None) -> dict[str, Any]:
    """A graph answer as PROTOCOL §4.2 shows it: without this server's additive fields."""
    return {
        "nodes": [node.model_dump(mode="json") for node in NODES],
        "secrets": {"api_key": True},
        "retry_policy": RetryPolicyModel().model_dump(mode="json"),
        "store_config": {"required_keys": [], "default_values": {}},
        "triggers": [],
        "created_at": "2025-09-04T10:15:30.123000",
        "updated_at": "2025-09-04T10:15:30.123000",
        "validation_status": status,
        "validation_errors": errors or [],
    }


def run(status: str, finished: bool) -> dict[str, Any]:
    counts = {"success_count": 1, "pending_count": 0 if finished else 1, "errored_count": 0, "retried_count": 0}
    return {
        "run_id": "r",
        "graph_name": "g",
        **counts,
        "total_count": 2,
        "status": status,
        "created_at": "2025-09-04T10:15:30.123000",
        "namespace": "ns",
        "finished": finished,
    }


def state(state_id: str) -> dict[str, Any]:
    return {
        "state_id": state_id,
        "id": state_id,
        "node_name": "Greet",
        "identifier": "greet",
        "namespace": "ns",
        "graph_name": "g",
        "run_id": "r",
        "status": "SUCCESS",
        "inputs": {"name": "x"},
        "outputs": {"greeting": "hi"},
        "data": {},
        "error": None,
        "parents": {},
        "retry_count": 0,
        "attempts": 1,
        "does_unites": False,
        "enqueue_after": 1757000000000,
        "created_at": "2025-09-04T10:15:30.123000",
        "updated_at": "2025-09-04T10:15:31.123000",
        "started_at": "2025-09-04T10:15:30.500000",
        "finished_at": "2025-09-04T10:15:31.123000",
    }


class Script:
    """Replies per (method, path suffix), served in order; the last one repeats."""

    def __init__(self) -> None:
        self.replies: dict[tuple[str, str], list[Reply]] = {}

    def on(self, method: str, suffix: str, *replies: Reply) -> None:
        self.replies[(method, suffix)] = list(replies)

    async def handle(self, request: Request) -> Reply:
        for (method, suffix), replies in self.replies.items():
            if request.method == method and request.path.endswith(suffix):
                if request.query.get("wait_ms") and replies[0].body.get("finished") is False:
                    await asyncio.sleep(min(0.2, int(request.query["wait_ms"]) / 1000))
                return replies.pop(0) if len(replies) > 1 else replies[0]
        return Reply(404, {"detail": "Not Found"})


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[tuple[Script, FakeServer, StateManager]]:
    script = Script()
    server = FakeServer(script.handle)
    await server.start()
    async with StateManager("ns", state_manager_uri=server.url, key="k") as sm:
        yield script, server, sm
    await server.stop()


Scripted = tuple[Script, FakeServer, StateManager]


async def test_trigger_sends_inputs_store_and_start_delay(scripted: Scripted) -> None:
    script, server, sm = scripted
    script.on("POST", "/v0/namespace/ns/graph/g/trigger", Reply(200, {"status": "CREATED", "run_id": "r1"}))
    assert await sm.trigger("g", inputs={"a": "1"}, store={"cursor": "0"}) == {"status": "CREATED", "run_id": "r1"}
    assert await sm.trigger("g") == {"status": "CREATED", "run_id": "r1"}
    assert server.requests[0].body == {"start_delay": 0, "inputs": {"a": "1"}, "store": {"cursor": "0"}}
    assert server.requests[1].body == {"start_delay": 0, "inputs": {}, "store": {}}


async def test_a_trigger_that_may_have_arrived_is_not_sent_twice(scripted: Scripted) -> None:
    script, server, sm = scripted
    script.on(
        "POST", "/trigger", Reply(503, {"detail": "restarting"}), Reply(200, {"status": "CREATED", "run_id": "r"})
    )
    with pytest.raises(Exception, match="503 restarting"):
        await sm.trigger("g")
    assert len(server.requests) == 1


async def test_upsert_sends_models_and_cron_triggers_and_polls_while_pending(scripted: Scripted) -> None:
    script, server, sm = scripted
    script.on("PUT", "/graph/g", Reply(201, graph("PENDING")))
    script.on("GET", "/graph/g", Reply(200, graph("PENDING")), Reply(200, graph("VALID")))
    result = await sm.upsert_graph(
        "g",
        NODES,
        {"api_key": "s"},
        retry_policy=RetryPolicyModel(max_retries=1),
        store_config=StoreConfigModel(required_keys=["cursor"]),
        triggers=[CronTrigger(expression="0 9 * * 1-5"), CronTrigger(expression="0 * * * *", store={"cursor": "0"})],
        polling_interval=0,
    )
    assert result == graph("VALID")  # the keys the server sent, no more
    assert len(server.calls("/graph/g")) == 3
    body = server.requests[0].body
    assert body["secrets"] == {"api_key": "s"}
    # Nodes without a time-out are sent as before `timeout_seconds` existed.
    assert body["nodes"] == [node.model_dump(mode="json", exclude={"timeout_seconds"}) for node in NODES]
    assert body["retry_policy"]["max_retries"] == 1
    assert body["store_config"] == {"required_keys": ["cursor"], "default_values": {}}
    assert body["triggers"] == [
        {"type": "CRON", "value": {"expression": "0 9 * * 1-5"}},
        {"type": "CRON", "value": {"expression": "0 * * * *", "store": {"cursor": "0"}}},
    ]


async def test_upsert_leaves_out_optional_parts_not_given(scripted: Scripted) -> None:
    script, server, sm = scripted
    script.on("PUT", "/graph/g", Reply(201, graph("VALID")))
    await sm.upsert_graph("g", NODES, {})
    assert set(server.requests[0].body) == {"secrets", "nodes"}


async def test_an_invalid_graph_raises_with_the_servers_errors(scripted: Scripted) -> None:
    script, _, sm = scripted
    errors = ["Node Greet in namespace ns does not exist."]
    script.on("PUT", "/graph/g", Reply(201, graph("INVALID", errors)))
    with pytest.raises(GraphValidationError) as caught:
        await sm.upsert_graph("g", NODES, {})
    assert caught.value.status == "INVALID"
    assert caught.value.errors == errors
    assert "does not exist" in str(caught.value)


async def test_a_structurally_broken_graph_raises_graph_validation_error(scripted: Scripted) -> None:
    script, _, sm = scripted
    detail = "Error validating graph template: There should be exactly one root node"
    script.on("PUT", "/graph/g", Reply(400, {"detail": detail}))
    with pytest.raises(GraphValidationError) as caught:
        await sm.upsert_graph("g", NODES, {})
    assert caught.value.errors == [detail]


async def test_validation_still_pending_after_the_timeout_raises(scripted: Scripted) -> None:
    script, _, sm = scripted
    script.on("PUT", "/graph/g", Reply(201, graph("PENDING")))
    script.on("GET", "/graph/g", Reply(200, graph("PENDING")))
    with pytest.raises(GraphValidationError, match="PENDING"):
        await sm.upsert_graph("g", NODES, {}, validation_timeout=0, polling_interval=0)


async def test_errors_carry_the_status_and_message(scripted: Scripted) -> None:
    _, _, sm = scripted
    with pytest.raises(NotFoundError) as caught:
        await sm.get_graph("missing")
    assert caught.value.status_code == 404
    assert caught.value.detail == "Not Found"


def sse(*events: tuple[str, dict[str, object]]) -> Reply:
    """An event-stream answer that ends after these (event, progress) pairs; the id is the progress's version."""
    text = "retry: 1000\n\n" + "".join(
        f"id: {body['version']}\nevent: {name}\ndata: {json.dumps(body)}\n\n" for name, body in events
    )
    return Reply(200, raw=text.encode(), headers={"x-stream": "1"})


def progress(version: int, status: str = "PENDING", **counts: int) -> dict[str, object]:
    finished = status != "PENDING"
    return {
        "run_id": "r",
        "namespace": "ns",
        "graph_name": "g",
        "status": status,
        "finished": finished,
        "version": version,
        "success_count": counts.get("success", 0),
        "pending_count": 0 if finished else 1,
        "errored_count": 0,
        "retried_count": 0,
        "total_count": counts.get("success", 0) + (0 if finished else 1),
        "created_at": "2026-12-02T12:00:00+00:00",
        "nodes": [{"identifier": "greet", "node_name": "Greet", "counts": {"SUCCESS": counts.get("success", 0)}}],
    }


async def test_wait_for_run_follows_the_event_stream_and_returns_the_run(scripted: Scripted) -> None:
    script, server, sm = scripted
    # The first stream ends early (a restarting server); the second resumes after the last id seen.
    script.on(
        "GET",
        "/run/r/events",
        sse(("snapshot", progress(1))),
        sse(("snapshot", progress(1)), ("finished", progress(3, "SUCCESS", success=1))),
    )
    script.on("GET", "/run/r", Reply(200, run("SUCCESS", finished=True)))
    assert await sm.wait_for_run("r", timeout=10) == run("SUCCESS", finished=True)
    streams = server.calls("/run/r/events")
    assert [request.headers.get("last-event-id") for request in streams] == [None, "1"]
    assert "wait_ms" not in server.calls("/run/r")[0].query  # no long-poll: the stream said when


async def test_watch_run_yields_typed_events_once_each_and_ends_when_finished(scripted: Scripted) -> None:
    script, server, sm = scripted
    script.on(
        "GET",
        "/run/r/events",
        sse(("snapshot", progress(1)), ("change", progress(2))),
        Reply(drop=True),  # a dropped connection: reconnect with backoff
        sse(("snapshot", progress(2)), ("change", progress(4)), ("finished", progress(5, "FAILED"))),
    )
    events = [event async for event in sm.watch_run("r")]
    assert [(e.event, e.version, e.status) for e in events] == [
        ("snapshot", 1, "PENDING"),
        ("change", 2, "PENDING"),  # the repeated snapshot of version 2 is not yielded again
        ("change", 4, "PENDING"),
        ("finished", 5, "FAILED"),
    ]
    assert events[0].nodes[0].identifier == "greet" and events[0].summary()["pending_count"] == 1
    assert [r.headers.get("last-event-id") for r in server.calls("/run/r/events")] == [None, "2", "2"]


async def test_watch_run_raises_refusals_at_once(scripted: Scripted) -> None:
    script, server, sm = scripted
    script.on("GET", "/run/missing/events", Reply(404, {"detail": "Run missing not found in namespace ns"}))
    with pytest.raises(NotFoundError, match="Run missing not found"):
        await anext(sm.watch_run("missing"))
    script.on("GET", "/run/r/events", Reply(401, {"detail": "Invalid API key"}))
    with pytest.raises(AuthenticationError):
        await anext(sm.watch_run("r"))
    assert len(server.requests) == 2


async def test_wait_for_run_raises_a_typed_timeout() -> None:
    first = sse(("snapshot", progress(1)))

    async def pending_then_silent(request: Request) -> Reply:
        if request.headers.get("last-event-id") is None:
            return first
        await asyncio.sleep(3600)  # the reconnection hangs: only the timeout ends the wait
        raise AssertionError("unreachable")

    server = FakeServer(pending_then_silent)
    await server.start()
    try:
        waiting = StateManager("ns", state_manager_uri=server.url, key="k")
        with pytest.raises(RunTimeoutError) as caught:
            await waiting.wait_for_run("r", timeout=0.5)
        await waiting.aclose()
    finally:
        await server.stop()
    assert caught.value.run is not None and caught.value.run["status"] == "PENDING"
    assert isinstance(caught.value, TimeoutError)


async def test_run_states_are_returned_as_a_list(scripted: Scripted) -> None:
    script, _, sm = scripted
    states = [state("s1"), state("s2")]
    page = {"run_id": "r", "count": 2, "total": 2, "page": 1, "size": 1000, "states": states}
    script.on("GET", "/run/r/states", Reply(200, page))
    assert await sm.get_run_states("r") == states


async def test_a_state_manager_can_be_used_from_successive_event_loops(scripted: Scripted) -> None:
    script, server, _ = scripted
    script.on("GET", "/graph/g", Reply(200, graph("VALID")))
    sm = StateManager("ns", state_manager_uri=server.url, key="k")

    def use_in_a_fresh_loop() -> str:
        return str(asyncio.run(sm.get_graph("g"))["validation_status"])

    assert await asyncio.to_thread(use_in_a_fresh_loop) == "VALID"
    assert await asyncio.to_thread(use_in_a_fresh_loop) == "VALID"


async def test_keys_a_newer_server_adds_are_handed_on(scripted: Scripted) -> None:
    script, _, sm = scripted
    script.on("GET", "/graph/g", Reply(200, {**graph("VALID"), "name": "g", "owner": "someone"}))
    assert (await sm.get_graph("g"))["owner"] == "someone"


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (Reply(200, {**run("PENDING", finished=False), "status": "SOMETIMES"}), "status: Input should be"),
        (Reply(200, ["not", "a", "run"]), "RunResponse"),
        (Reply(200, raw=b"<html>proxy error</html>"), "not JSON"),
    ],
    ids=["a field of another type", "another shape", "not JSON"],
)
async def test_an_answer_that_does_not_fit_the_contract_is_a_typed_error(
    scripted: Scripted, answer: Reply, named: str
) -> None:
    script, _, sm = scripted
    script.on("GET", "/run/r", answer)
    with pytest.raises(UnexpectedAnswerError, match=named) as caught:
        await sm.get_run("r")
    assert caught.value.status_code == 200 and not caught.value.retryable
    assert "Reading run r" in str(caught.value)
