"""Named limits and node concurrency: a claim hands out only states whose buckets have room, in order,
on every replica; a provider's 429 (`rate-limited`) pauses the limit for everybody, without a retry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess

from ..blackbox.helpers import claim, counts_match_states, executed, node, register, states, trigger, upsert


def client(server: ServerProcess, namespace: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=30
    )


@pytest.fixture
def replicas(
    backend: str, server: ServerProcess, make_server: Callable[..., ServerProcess], namespace: str
) -> Iterator[list[httpx.Client]]:
    """Two servers on one PostgreSQL database (one server on SQLite, where a second process is no
    supported deployment): the clients of each."""
    servers = [server] if backend == "sqlite" else [server, make_server(database=server.database_url)]
    clients = [client(s, namespace) for s in servers]
    yield clients
    for c in clients:
        c.close()


def set_limit(api: httpx.Client, name: str, **budgets: int) -> dict[str, Any]:
    response = api.put(f"/limits/{name}", json=budgets)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def limited_graph(api: httpx.Client, namespace: str, graph: str, **extra: Any) -> None:
    """One node `Call` with the node fields given (`limits`, `concurrency`), reading store `who` and `tokens`."""
    register(api, {"Call": (("who",), ("done",))})
    upsert(
        api,
        graph,
        [{**node("call", "Call", namespace, {"who": "${{ store.who }}"}), **extra}],
        store_config={"required_keys": ["who"], "default_values": {"tokens": "0"}},
    )


def test_limits_are_set_read_listed_and_deleted(api: httpx.Client) -> None:
    body = set_limit(api, "openai", requests_per_minute=500, tokens_per_minute=90_000)
    assert body["name"] == "openai" and body["requests_per_minute"] == 500 and body["concurrency"] is None
    set_limit(api, "slow-api", concurrency=2)
    assert api.get("/limits/openai").json()["tokens_per_minute"] == 90_000
    assert [limit["name"] for limit in api.get("/limits").json()["limits"]] == ["openai", "slow-api"]
    replaced = set_limit(api, "openai", concurrency=4)
    assert replaced["concurrency"] == 4 and replaced["requests_per_minute"] is None
    assert api.delete("/limits/openai").json()["deleted"] is True
    assert api.get("/limits/openai").status_code == 404
    assert api.delete("/limits/openai").status_code == 404


@pytest.mark.parametrize(
    ("name", "body", "says"),
    [
        ("openai", {}, "at least one of"),
        ("openai", {"concurrency": 0}, "concurrency"),
        ("openai", {"requests_per_minute": -5}, "requests_per_minute"),
        ("@node", {"concurrency": 1}, "name"),
    ],
)
def test_a_bad_limit_is_refused_with_what_to_fix(api: httpx.Client, name: str, body: dict[str, Any], says: str) -> None:
    response = api.put(f"/limits/{name}", json=body)
    assert response.status_code == 422, response.text
    assert says in response.text


@pytest.mark.parametrize(
    ("limits", "says"),
    [
        ([{"name": "openai", "tokens": "many"}], "must be a whole number"),
        ([{"name": "openai", "tokens": "${{ store.missing }}"}], "reads store key 'missing'"),
        ([{"name": "openai", "key": "${{ ghost.outputs.k }}"}], "'ghost' is not a node"),
        ([{"name": "openai"}, {"name": "openai"}], "more than once"),
    ],
)
def test_a_graph_with_bad_limit_uses_is_refused(
    api: httpx.Client, namespace: str, limits: list[dict[str, Any]], says: str
) -> None:
    register(api, {"Call": (("who",), ("done",))})
    response = api.put(
        "/graph/bad", json={"secrets": {}, "nodes": [{**node("call", "Call", namespace), "limits": limits}]}
    )
    assert response.status_code == 400, response.text
    assert says in response.text


def test_node_concurrency_holds_under_racing_claims(replicas: list[httpx.Client], namespace: str) -> None:
    api = replicas[0]
    limited_graph(api, namespace, "capped", concurrency=3)
    for i in range(12):
        trigger(api, "capped", store={"who": str(i)})
    claimed: list[dict[str, Any]] = []
    lock = threading.Lock()

    def claimer(index: int) -> None:
        with client_like(replicas[index % len(replicas)]) as own:
            got = claim(own, "Call", batch_size=5)
        with lock:
            claimed.extend(got)

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 3, [s["inputs"] for s in claimed]
    assert claim(replicas[-1], "Call") == []
    # One finishes: exactly one more goes, the oldest waiting, and it is woken for at once.
    assert executed(api, claimed[0], {"done": "y"}).status_code == 200
    [next_one] = claim(replicas[-1], "Call", wait_ms=10_000)
    assert next_one["inputs"]["who"] == "3"
    assert claim(api, "Call") == []


def client_like(api: httpx.Client) -> httpx.Client:
    """A client of its own per thread, to the same server and namespace."""
    return httpx.Client(base_url=api.base_url, headers=api.headers, timeout=30)


def test_a_key_splits_a_limit_into_buckets(api: httpx.Client, namespace: str) -> None:
    set_limit(api, "per-customer", concurrency=1)
    limited_graph(api, namespace, "keyed", limits=[{"name": "per-customer", "key": "${{ store.who }}"}])
    for who in ("ada", "ada", "bob", "ada"):
        trigger(api, "keyed", store={"who": who})
    first = claim(api, "Call")
    assert sorted(s["inputs"]["who"] for s in first) == ["ada", "bob"]
    assert claim(api, "Call") == []
    ada = next(s for s in first if s["inputs"]["who"] == "ada")
    assert executed(api, ada, {"done": "y"}).status_code == 200
    [again] = claim(api, "Call", wait_ms=10_000)
    assert again["inputs"]["who"] == "ada"


def test_requests_and_tokens_per_minute_are_kept(api: httpx.Client, namespace: str) -> None:
    # 60 requests a minute: one at once, the next a second later. 600 tokens a minute: 10 a second.
    set_limit(api, "provider", requests_per_minute=60, tokens_per_minute=600)
    limited_graph(api, namespace, "metered", limits=[{"name": "provider", "tokens": "${{ store.tokens }}"}])
    runs = [trigger(api, "metered", store={"who": str(i), "tokens": "10"}) for i in range(3)]
    [first] = claim(api, "Call")
    assert first["inputs"]["who"] == "0"
    assert claim(api, "Call") == []  # the bucket is empty until it refills
    [second] = claim(api, "Call", wait_ms=10_000)  # the claim looks again when the bucket has room
    assert second["inputs"]["who"] == "1"
    started = [states(api, run_id)[0]["started_at"] for run_id in runs[:2]]
    gap_ms = _ms(started[1]) - _ms(started[0])
    assert gap_ms >= 990, f"the second request went {gap_ms} ms after the first, under a 1/s limit"


def _ms(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() * 1000


def test_states_of_an_undefined_limit_wait_until_it_is_defined(api: httpx.Client, namespace: str) -> None:
    limited_graph(api, namespace, "early", limits=[{"name": "later"}])
    trigger(api, "early", store={"who": "x"})
    assert claim(api, "Call") == []
    set_limit(api, "later", concurrency=5)
    [state] = claim(api, "Call", wait_ms=10_000)
    assert state["inputs"]["who"] == "x"


def test_rate_limited_pauses_the_limit_for_everybody_without_a_retry(
    api: httpx.Client, namespace: str, server: ServerProcess
) -> None:
    set_limit(api, "provider", requests_per_minute=6000)
    limited_graph(api, namespace, "throttled", limits=[{"name": "provider"}])
    runs = [trigger(api, "throttled", store={"who": str(i)}) for i in range(2)]
    [first] = claim(api, "Call", batch_size=1)
    response = api.post(
        f"/state/{first['state_id']}/rate-limited",
        json={"limit": "provider", "retry_after_seconds": 1.5, "lease_id": first["lease_id"]},
    )
    assert response.status_code == 200, response.text
    resume_at = response.json()["enqueue_after"]
    assert api.get("/limits/provider").json()["paused_until"] >= resume_at
    assert claim(api, "Call") == []  # the other state waits too: the limit is paused for everybody
    got: list[dict[str, Any]] = []
    while len(got) < 2:
        got += claim(api, "Call", wait_ms=10_000)
    assert sorted(s["inputs"]["who"] for s in got) == ["0", "1"]
    for run_id in runs:
        [state] = states(api, run_id)
        assert state["retry_count"] == 0
        assert _ms(state["started_at"]) >= resume_at - 1  # nothing went before the provider was ready
    assert executed(api, got[0], {"done": "y"}).status_code == 200
    for run_id in runs:  # limited claims, the requeue and the result kept the run counts exact
        counts_match_states(api, server.database_url, run_id)


def test_rate_limited_with_a_stale_lease_is_refused(api: httpx.Client, namespace: str) -> None:
    set_limit(api, "provider", concurrency=5)
    limited_graph(api, namespace, "stale", limits=[{"name": "provider"}])
    trigger(api, "stale", store={"who": "x"})
    [state] = claim(api, "Call")
    response = api.post(
        f"/state/{state['state_id']}/rate-limited",
        json={"limit": "provider", "retry_after_seconds": 1, "lease_id": "not-the-lease"},
    )
    assert response.status_code == 409, response.text
    bad = api.post(f"/state/{state['state_id']}/rate-limited", json={"limit": "provider", "retry_after_seconds": -1})
    assert bad.status_code == 422


def test_eager_dispatch_keeps_to_limits(api: httpx.Client, namespace: str) -> None:
    register(api, {"First": (("who",), ("who",)), "Second": (("who",), ("done",))})
    upsert(
        api,
        "pair",
        [
            node("first", "First", namespace, {"who": "${{ store.who }}"}, ["second"]),
            {**node("second", "Second", namespace, {"who": "${{ first.outputs.who }}"}), "concurrency": 1},
        ],
        store_config={"required_keys": ["who"]},
    )
    for who in ("a", "b"):
        trigger(api, "pair", store={"who": who})
    firsts = claim(api, "First")
    assert len(firsts) == 2
    handed: list[dict[str, Any]] = []
    for state in firsts:
        response = api.post(
            f"/state/{state['state_id']}/executed",
            json={
                "outputs": [{"who": state["inputs"]["who"]}],
                "lease_id": state["lease_id"],
                "claim": {"nodes": ["Second"], "max": 5},
            },
        )
        assert response.status_code == 200, response.text
        handed += response.json()["states"]
    assert len(handed) == 1  # the second `Second` waits for the first's slot
    assert claim(api, "Second") == []


def report_usage(api: httpx.Client, state: dict[str, Any], **usage: int) -> None:
    body = {"outputs": [{"done": "y"}], "lease_id": state["lease_id"], "usage": usage}
    response = api.post(f"/state/{state['state_id']}/executed", json=body)
    assert response.status_code == 200, response.text


def test_usage_above_the_estimate_is_owed_by_the_bucket(api: httpx.Client, namespace: str) -> None:
    # 600 tokens a minute (10 a second at most at once), 1 token estimated per state.
    set_limit(api, "provider", tokens_per_minute=600)
    limited_graph(api, namespace, "owing", limits=[{"name": "provider", "tokens": "1"}])
    for i in range(3):
        trigger(api, "owing", store={"who": str(i)})
    [first] = claim(api, "Call", batch_size=1)
    report_usage(api, first, input_tokens=5_000, output_tokens=1_000)  # ten minutes' worth
    assert claim(api, "Call") == []  # without the correction, 9 tokens were left for the next states


def test_usage_below_the_estimate_is_given_back(api: httpx.Client, namespace: str) -> None:
    # One token a minute: the state's estimate of 1 empties the bucket for a minute...
    set_limit(api, "provider", tokens_per_minute=1)
    limited_graph(api, namespace, "refund", limits=[{"name": "provider", "tokens": "1"}])
    for i in range(2):
        trigger(api, "refund", store={"who": str(i)})
    [first] = claim(api, "Call")
    assert claim(api, "Call") == []
    report_usage(api, first, input_tokens=0, output_tokens=0)  # ...unless it used none of it
    [second] = claim(api, "Call")
    assert second["inputs"]["who"] == "1"
