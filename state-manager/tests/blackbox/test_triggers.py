"""Idempotent triggers and bulk triggers: one key gives one run, on one server and across replicas."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess

from .helpers import claim_all, node, register, upsert


def _echo_graph(api: httpx.Client, namespace: str, name: str = "echo") -> str:
    """One node that reads the store's `text`, which every trigger must give."""
    register(api, {"Echo": (("text",), ("text",))})
    nodes = [node("echo", "Echo", namespace, {"text": "${{ store.text }}"})]
    upsert(api, name, nodes, store_config={"required_keys": ["text"]})
    return name


@pytest.fixture
def graph(api: httpx.Client, namespace: str) -> str:
    return _echo_graph(api, namespace)


def _runs(api: httpx.Client, graph: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = api.get("/runs/1/100", params={"graph_name": graph}).json()["runs"]
    return runs


def test_a_second_trigger_with_the_same_key_answers_the_first_run_and_creates_nothing(
    api: httpx.Client, graph: str
) -> None:
    body = {"store": {"text": "a"}, "idempotency_key": "order-1"}
    first = api.post(f"/graph/{graph}/trigger", json=body).json()
    second = api.post(f"/graph/{graph}/trigger", json={**body, "store": {"text": "other"}}).json()
    assert first == {"status": "CREATED", "run_id": first["run_id"], "duplicate": False}
    assert second == {"status": "CREATED", "run_id": first["run_id"], "duplicate": True}
    assert [r["run_id"] for r in _runs(api, graph)] == [first["run_id"]]
    assert len(claim_all(api, "Echo", count=1)) == 1


def test_the_key_may_come_as_the_idempotency_key_header(api: httpx.Client, graph: str) -> None:
    first = api.post(f"/graph/{graph}/trigger", json={"store": {"text": "a"}}, headers={"Idempotency-Key": "h-1"})
    second = api.post(f"/graph/{graph}/trigger", json={"store": {"text": "a"}, "idempotency_key": "h-1"})
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert second.json()["run_id"] == first.json()["run_id"] and second.json()["duplicate"] is True


def test_a_header_and_a_body_key_that_differ_are_refused(api: httpx.Client, graph: str) -> None:
    response = api.post(
        f"/graph/{graph}/trigger",
        json={"store": {"text": "a"}, "idempotency_key": "one"},
        headers={"Idempotency-Key": "two"},
    )
    assert response.status_code == 400
    assert "Idempotency-Key header and the body's idempotency_key differ" in response.json()["detail"]


def test_keys_belong_to_one_graph(api: httpx.Client, graph: str, namespace: str) -> None:
    _echo_graph(api, namespace, "echo2")
    body = {"store": {"text": "a"}, "idempotency_key": "shared"}
    one = api.post(f"/graph/{graph}/trigger", json=body).json()
    other = api.post("/graph/echo2/trigger", json=body).json()
    assert one["run_id"] != other["run_id"] and not other["duplicate"]


def test_a_refused_trigger_does_not_keep_its_key(api: httpx.Client, graph: str) -> None:
    refused = api.post(f"/graph/{graph}/trigger", json={"idempotency_key": "k", "store": {}})
    assert refused.status_code == 400, refused.text
    accepted = api.post(f"/graph/{graph}/trigger", json={"store": {"text": "a"}, "idempotency_key": "k"})
    assert accepted.status_code == 200 and accepted.json()["duplicate"] is False


def test_an_empty_or_too_long_key_is_a_422_naming_the_field(api: httpx.Client, graph: str) -> None:
    for key in ("", "k" * 256):
        response = api.post(f"/graph/{graph}/trigger", json={"store": {"text": "a"}, "idempotency_key": key})
        assert response.status_code == 422, response.text
        assert "idempotency_key" in response.text


def test_concurrent_triggers_with_one_key_through_two_replicas_give_one_run(
    backend: str, make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    first = make_server()
    # Two processes on one PostgreSQL database; on SQLite two concurrent requests to one server.
    second = make_server(first.database_url) if backend == "postgres" else first
    clients = [
        httpx.Client(base_url=f"{s.url}/v0/namespace/{namespace}", headers={"x-api-key": s.api_key}, timeout=30)
        for s in (first, second)
    ]
    _echo_graph(clients[0], namespace)
    for attempt in range(5):
        key = f"race-{attempt}"
        barrier = threading.Barrier(8)
        answers: list[dict[str, Any]] = []

        def fire(
            client: httpx.Client,
            key: str = key,
            barrier: threading.Barrier = barrier,
            answers: list[dict[str, Any]] = answers,
        ) -> None:
            barrier.wait()
            response = client.post("/graph/echo/trigger", json={"store": {"text": "a"}, "idempotency_key": key})
            assert response.status_code == 200, response.text
            answers.append(response.json())

        threads = [threading.Thread(target=fire, args=(clients[i % 2],)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answers) == 8
        assert len({a["run_id"] for a in answers}) == 1, answers
        assert sorted(a["duplicate"] for a in answers) == [False] + [True] * 7
    assert len(_runs(clients[1], "echo")) == 5


def test_trigger_many_starts_one_run_per_entry_in_order(api: httpx.Client, graph: str) -> None:
    entries = [{"store": {"text": str(i)}} for i in range(50)]
    response = api.post(f"/graph/{graph}/trigger-many", json={"runs": entries})
    assert response.status_code == 200, response.text
    started = response.json()["runs"]
    assert len({r["run_id"] for r in started}) == 50 and not any(r["duplicate"] for r in started)
    claimed = claim_all(api, "Echo", count=50)
    by_run = {s["state_id"]: s for s in claimed}
    assert len(by_run) == 50
    texts = {api.get(f"/run/{r['run_id']}/states").json()["states"][0]["inputs"]["text"] for r in started}
    assert texts == {str(i) for i in range(50)}


def test_trigger_many_honours_idempotency_keys_within_and_across_requests(api: httpx.Client, graph: str) -> None:
    earlier = api.post(f"/graph/{graph}/trigger", json={"store": {"text": "a"}, "idempotency_key": "old"}).json()
    entries = [
        {"store": {"text": "a"}, "idempotency_key": "old"},
        {"store": {"text": "b"}, "idempotency_key": "new"},
        {"store": {"text": "c"}, "idempotency_key": "new"},
        {"store": {"text": "d"}},
    ]
    started = api.post(f"/graph/{graph}/trigger-many", json={"runs": entries}).json()["runs"]
    assert started[0] == {"status": "CREATED", "run_id": earlier["run_id"], "duplicate": True}
    assert started[2]["run_id"] == started[1]["run_id"] and started[2]["duplicate"] and not started[1]["duplicate"]
    assert len(_runs(api, graph)) == 3


def test_trigger_many_refuses_a_bad_entry_by_its_position_and_starts_none(api: httpx.Client, graph: str) -> None:
    entries = [{"store": {"text": "a"}}, {"store": {}}]
    response = api.post(f"/graph/{graph}/trigger-many", json={"runs": entries})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("runs[1]: ")
    assert _runs(api, graph) == []
    for body in ({"runs": []}, {"runs": [{"store": {"text": "a"}}] * 1001}):
        assert api.post(f"/graph/{graph}/trigger-many", json=body).status_code == 422
