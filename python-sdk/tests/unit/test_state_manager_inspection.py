"""StateManager's inspection methods on the wire, and the options the CLI relies on (attempts, no key)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from exospherehost import ApiError, ConfigurationError, ConflictError, ServerUnavailableError, StateManager
from fake_server import FakeServer, Reply, Request

pytestmark = pytest.mark.asyncio

NOW = "2026-12-02T12:00:00+00:00"
SUMMARY = {
    "run_id": "r1",
    "graph_name": "g",
    "namespace": "ns",
    "status": "SUCCESS",
    "finished": True,
    "created_at": NOW,
    **dict.fromkeys(("success_count", "total_count"), 1),
    **dict.fromkeys(("pending_count", "errored_count", "retried_count"), 0),
}
# The smallest answer of each route that fits exospherehost.contract.
GRAPHS = {"namespace": "ns", "count": 0, "templates": []}
ANSWERS = [
    GRAPHS,
    {"namespace": "ns", "total": 0, "page": 1, "size": 20, "runs": []},
    {"namespace": "ns", "total": 0, "page": 2, "size": 50, "runs": []},
    {**SUMMARY, "nodes": []},
    {
        "state_id": "s/1",
        "id": "s/1",
        "node_name": "A",
        "identifier": "a",
        "namespace": "ns",
        "graph_name": "g",
        "run_id": "r1",
        "status": "SUCCESS",
        "inputs": {},
        "outputs": {},
        "data": {},
        "error": None,
        "parents": {},
        "retry_count": 0,
        "attempts": 1,
        "does_unites": False,
        "enqueue_after": 0,
        "created_at": NOW,
        "updated_at": NOW,
        "started_at": NOW,
        "finished_at": NOW,
    },
    {"namespace": "ns", "count": 0, "nodes": []},
    {"namespaces": ["ns"], "count": 1},
]
GRAPH = {
    "name": "g",
    "nodes": [],
    "secrets": {},
    "retry_policy": {},
    "store_config": {},
    "triggers": [],
    "created_at": NOW,
    "updated_at": NOW,
    "validation_status": "INVALID",
    "validation_errors": ["x"],
}


class Replies:
    """Serves the scripted replies in order (the last one repeats); records every request."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)

    async def handle(self, request: Request) -> Reply:
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[Replies, FakeServer]]:
    replies = Replies(Reply(200, {}))
    fake = FakeServer(replies.handle)
    await fake.start()
    yield replies, fake
    await fake.stop()


Served = tuple[Replies, FakeServer]


async def test_each_method_reads_its_endpoint(server: Served) -> None:
    replies, fake = server
    replies.replies = [*(Reply(200, answer) for answer in ANSWERS), Reply(500, {})]
    async with StateManager("my ns", state_manager_uri=fake.url, key="k") as sm:
        got = [
            await sm.list_graphs(),
            await sm.list_runs(),
            await sm.list_runs(2, 50, graph_name="g/1", status="FAILED"),
            await sm.get_run_progress("r1"),
            await sm.get_state("s/1"),
            await sm.list_nodes(),
            await sm.list_namespaces(),
        ]
    assert got == ANSWERS  # as the server sent them
    assert [(r.method, r.path, r.query) for r in fake.requests] == [
        ("GET", "/v0/namespace/my%20ns/graphs/", {}),
        ("GET", "/v0/namespace/my%20ns/runs/1/20", {}),
        ("GET", "/v0/namespace/my%20ns/runs/2/50", {"graph_name": "g/1", "status": "FAILED"}),
        ("GET", "/v0/namespace/my%20ns/run/r1/progress", {}),
        ("GET", "/v0/namespace/my%20ns/state/s%2F1", {}),
        ("GET", "/v0/namespace/my%20ns/nodes/", {}),
        ("GET", "/v0/namespaces", {}),
    ]


async def test_apply_graph_puts_the_template_as_given_and_returns_at_once(server: Served) -> None:
    replies, fake = server
    replies.replies = [Reply(201, GRAPH)]
    template = {"secrets": {}, "nodes": [{"node_name": "A", "identifier": "a"}], "triggers": []}
    async with StateManager("ns", state_manager_uri=fake.url, key="k") as sm:
        graph = await sm.apply_graph("g", template)
    assert graph["validation_status"] == "INVALID"  # reported, not raised, and not polled
    assert [(r.method, r.path, r.body) for r in fake.requests] == [("PUT", "/v0/namespace/ns/graph/g", template)]


async def test_apply_graph_refused_keeps_the_servers_detail(server: Served) -> None:
    replies, fake = server
    detail = [{"loc": ["body", "nodes", 0, "identifier"], "msg": "Field required"}]
    replies.replies = [Reply(422, {"detail": detail})]
    async with StateManager("ns", state_manager_uri=fake.url, key="k") as sm:
        with pytest.raises(ApiError) as caught:
            await sm.apply_graph("g", {"nodes": [{}]})
    assert caught.value.status_code == 422 and caught.value.detail == detail


async def test_retry_state_sends_a_fanout_id_and_is_not_resent_once_it_may_have_arrived(server: Served) -> None:
    replies, fake = server
    replies.replies = [Reply(503, {"detail": "restarting"}), Reply(200, {"id": "new", "status": "CREATED"})]
    async with StateManager("ns", state_manager_uri=fake.url, key="k") as sm:
        with pytest.raises(ServerUnavailableError):
            await sm.retry_state("s1")
        assert await sm.retry_state("s1", fanout_id="f-1") == {"id": "new", "status": "CREATED"}
    first, second = fake.requests
    assert first.path == second.path == "/v0/namespace/ns/state/s1/manual-retry"
    assert len(first.body["fanout_id"]) == 36 and second.body == {"fanout_id": "f-1"}


async def test_a_refused_retry_is_a_conflict(server: Served) -> None:
    replies, fake = server
    replies.replies = [Reply(409, {"detail": "Duplicate retry state detected"})]
    async with StateManager("ns", state_manager_uri=fake.url, key="k") as sm:
        with pytest.raises(ConflictError, match="Duplicate retry"):
            await sm.retry_state("s1")


async def test_attempts_bounds_how_often_a_failing_read_is_sent(server: Served) -> None:
    replies, fake = server
    replies.replies = [Reply(503, {"detail": "restarting"}), Reply(200, GRAPHS)]
    async with StateManager("ns", state_manager_uri=fake.url, key="k", attempts=1) as sm:
        with pytest.raises(ServerUnavailableError):
            await sm.list_graphs()
    assert len(fake.requests) == 1
    async with StateManager("ns", state_manager_uri=fake.url, key="k") as sm:  # the default retries
        assert await sm.list_graphs() == GRAPHS
    with pytest.raises(ConfigurationError, match="attempts must be 1 or more"):
        StateManager("ns", state_manager_uri=fake.url, attempts=0)


async def test_without_a_key_no_key_header_is_sent(server: Served) -> None:
    replies, fake = server
    replies.replies = [Reply(200, ANSWERS[-1])]
    async with StateManager("ns", state_manager_uri=fake.url) as sm:
        await sm.list_namespaces()
    async with StateManager("ns", state_manager_uri=fake.url, key="secret") as sm:
        await sm.list_namespaces()
    assert "x-api-key" not in fake.requests[0].headers
    assert fake.requests[1].headers["x-api-key"] == "secret"


async def test_an_unusable_address_is_a_configuration_error() -> None:
    async with StateManager("ns", state_manager_uri="http://bad\x00host", key="k") as sm:
        with pytest.raises(ConfigurationError, match="not a valid URL"):
            await sm.list_graphs()


async def test_no_answer_in_time_is_marked_timed_out(server: Served) -> None:
    replies, fake = server
    never = asyncio.Event()

    async def never_answers(request: Request) -> Reply:
        await never.wait()
        return Reply(200, {})

    fake.handler = never_answers
    async with StateManager("ns", state_manager_uri=fake.url, key="k", timeout=0.2, attempts=1) as sm:
        with pytest.raises(ServerUnavailableError) as caught:
            await sm.list_graphs()
    assert caught.value.timed_out and caught.value.request_sent
    refused = FakeServer(replies.handle)
    await refused.start()
    await refused.stop()  # its port now refuses connections
    async with StateManager("ns", state_manager_uri=refused.url, key="k", attempts=1) as sm:
        with pytest.raises(ServerUnavailableError) as caught:
            await sm.list_graphs()
    assert not caught.value.timed_out and not caught.value.request_sent
