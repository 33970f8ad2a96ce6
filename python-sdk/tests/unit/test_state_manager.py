"""StateManager: the wire of trigger/upsert/get, validation polling, and waiting for runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from exospherehost import (
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
    assert body["nodes"] == [node.model_dump(mode="json") for node in NODES]
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


async def test_wait_for_run_long_polls_until_finished(scripted: Scripted) -> None:
    script, server, sm = scripted
    running = Reply(200, run("PENDING", finished=False))
    done = Reply(200, run("SUCCESS", finished=True))
    script.on("GET", "/run/r", running, running, done)
    assert (await sm.wait_for_run("r", timeout=10))["status"] == "SUCCESS"
    waits = [int(request.query["wait_ms"]) for request in server.requests]
    assert len(waits) == 3
    assert all(0 < wait <= 10_000 for wait in waits)


async def test_wait_for_run_raises_a_typed_timeout(scripted: Scripted) -> None:
    script, _, sm = scripted
    script.on("GET", "/run/r", Reply(200, run("PENDING", finished=False)))
    started = time.monotonic()
    with pytest.raises(RunTimeoutError) as caught:
        await sm.wait_for_run("r", timeout=0.5)
    assert 0.4 < time.monotonic() - started < 2
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
