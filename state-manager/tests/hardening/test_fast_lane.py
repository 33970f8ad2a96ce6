"""The fast lane of the hot routes (`api/fast_lane.py`) answers exactly as the app does.

Each request is sent twice: as is (the fast lane answers it, or hands it on) and with a query string,
which the fast lane always leaves to the app (the route takes no query parameters, so the app answers
both the same way). The two answers must match: status, body, and the headers the app sets.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess

from ..blackbox.helpers import node, register, upsert
from ..security.test_keys import as_key, create_key

VOLATILE = ("run_id",)  # differs from one trigger to the next


def _answer(response: httpx.Response) -> tuple[int, Any, list[str], str | None]:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body = {k: ("<varies>" if k in VOLATILE else v) for k, v in body.items()}
    headers = sorted(name for name in response.headers if name not in ("date", "content-length"))
    return response.status_code, body, headers, response.headers.get("content-type")


def _both_ways(client: httpx.Client, path: str, **kwargs: Any) -> tuple[Any, Any]:
    fast = client.post(path, **kwargs)
    by_app = client.post(path, params={"via": "app"}, **kwargs)
    return _answer(fast), _answer(by_app)


@pytest.fixture
def graph(api: httpx.Client, namespace: str) -> str:
    register(api, {"Echo": (("text",), ("text",))})
    upsert(
        api,
        "echo",
        [node("echo", "Echo", namespace, {"text": "${{ store.text }}"})],
        store_config={"required_keys": ["text"]},
    )
    return "echo"


@pytest.mark.parametrize(
    ("case", "path", "request_kwargs", "status"),
    [
        ("a run started", "/graph/{graph}/trigger", {"json": {"store": {"text": "a"}}}, 200),
        ("with a key", "/graph/{graph}/trigger", {"json": {"store": {"text": "a"}, "idempotency_key": "k1"}}, 200),
        ("no such graph", "/graph/nothing/trigger", {"json": {"store": {"text": "a"}}}, 404),
        ("a store key missing", "/graph/{graph}/trigger", {"json": {}}, 400),
        ("a body that does not fit", "/graph/{graph}/trigger", {"json": {"inputs": "x"}}, 422),
        (
            "a body that is not JSON",
            "/graph/{graph}/trigger",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            422,
        ),
        ("an empty body", "/graph/{graph}/trigger", {"content": b""}, 422),
        (
            "keys that differ",
            "/graph/{graph}/trigger",
            {"json": {"store": {"text": "a"}, "idempotency_key": "x"}, "headers": {"Idempotency-Key": "y"}},
            400,
        ),
        (
            "a header key too long",
            "/graph/{graph}/trigger",
            {"json": {"store": {"text": "a"}}, "headers": {"Idempotency-Key": "k" * 10_000}},
            422,
        ),
        ("NUL in the graph's name", "/graph/a%00b/trigger", {"json": {}}, 422),
    ],
)
def test_the_fast_lane_answers_a_trigger_as_the_app_does(
    api: httpx.Client, graph: str, case: str, path: str, request_kwargs: dict[str, Any], status: int
) -> None:
    fast, by_app = _both_ways(api, path.format(graph=graph), **request_kwargs)
    assert fast[0] == status, (case, fast)
    if case == "with a key":  # the second of the two is a duplicate of the first, as it should be
        assert (fast[1]["duplicate"], by_app[1]["duplicate"]) == (False, True)
        by_app[1]["duplicate"] = False
    assert fast == by_app, case


def test_the_fast_lane_refuses_keys_as_the_app_does(server: ServerProcess, namespace: str, graph: str) -> None:
    viewer = create_key(server, "fast-lane-viewer", "viewer", namespace)
    other_namespace = create_key(server, "fast-lane-elsewhere", "operator", namespace + "-other")
    path = f"/v0/namespace/{namespace}/graph/{graph}/trigger"
    body = {"json": {"store": {"text": "a"}}}
    for secret, status in ((viewer["key"], 403), (other_namespace["key"], 403), ("not-a-key", 401)):
        with as_key(server, secret) as client:
            fast, by_app = _both_ways(client, path, **body)
        assert fast[0] == status and fast == by_app, (fast, by_app)


VARYING_IN_STATES = ("state_id", "inputs", "lease_id", "lease_expires_at", "created_at")


def _same_shape(answer: Any) -> Any:
    """A claim or result answer with what differs between two states of the same node taken out."""
    status, body, headers, content_type = answer
    if isinstance(body, dict):
        body = {**body, "states": [{**s, **dict.fromkeys(VARYING_IN_STATES)} for s in body.get("states", [])]}
        body["results"] = [{**r, "state_id": None} for r in body.get("results", [])]
    return status, body, headers, content_type


def test_the_fast_lane_claims_and_takes_results_as_the_app_does(api: httpx.Client, graph: str) -> None:
    for text in ("a", "b", "c", "d"):
        api.post(f"/graph/{graph}/trigger", json={"store": {"text": text}})
    claim = {"json": {"nodes": ["Echo"], "batch_size": 2, "wait_ms": 0}}
    fast, by_app = _both_ways(api, "/states/enqueue", **claim)
    assert fast[0] == 200 and len(fast[1]["states"]) == 2 and _same_shape(fast) == _same_shape(by_app)
    one, two = fast[1]["states"], by_app[1]["states"]

    # One result per call, then several in one call (one of which is refused on its own).
    single = [
        api.post(f"/state/{state['state_id']}/executed", params=params, json={"outputs": [{"text": "x"}]})
        for state, params in ((one[0], {}), (two[0], {"via": "app"}))
    ]
    assert _answer(single[0])[0] == 200 and _answer(single[0]) == _answer(single[1])
    results = [
        {
            "json": {
                "results": [
                    {"state_id": state["state_id"], "outputs": [{"text": "x"}]},
                    {"state_id": "nope", "outputs": []},
                ]
            }
        }
        for state in (one[1], two[1])
    ]
    many = [
        api.post("/states/executed", **results[0]),
        api.post("/states/executed", params={"via": "app"}, **results[1]),
    ]
    assert _answer(many[0])[0] == 200 and _same_shape(_answer(many[0])) == _same_shape(_answer(many[1]))

    for path, request_kwargs, status in (
        ("/state/not-a-state/executed", {"json": {"outputs": []}}, 404),
        (f"/state/{one[0]['state_id']}/executed", {"json": {"outputs": [{"text": "again"}]}}, 400),
        ("/states/enqueue", {"json": {"nodes": [], "batch_size": 0}}, 422),
        ("/states/executed", {"json": {"results": "none"}}, 422),
    ):
        fast, by_app = _both_ways(api, path, **request_kwargs)
        assert fast[0] == status and fast == by_app, (path, fast, by_app)
