"""Eager dispatch: a result that asks with `claim` is answered with the next states, claimed in its transaction.

A chain then runs on one request per hop; states handed out this way are leases like any claim's,
so one whose runtime vanished runs again once its lease expires; a result without `claim` (the
published client's) claims nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess

from .helpers import by_identifier, claim, claim_all, node, register, run, states, trigger, upsert

DEPTH = 6


@pytest.fixture
def chain(api: httpx.Client, namespace: str) -> str:
    return upsert_chain(api, namespace)


def upsert_chain(api: httpx.Client, namespace: str) -> str:
    """`step0 -> step1 -> ... -> step5`, every step the node `Step`, its input the previous step's output."""
    register(api, {"Step": (("n",), ("n",))})
    steps = [
        node(
            f"step{i}",
            "Step",
            namespace,
            {"n": "${{ store.start }}" if i == 0 else f"${{{{ step{i - 1}.outputs.n }}}}"},
            [f"step{i + 1}"] if i + 1 < DEPTH else [],
        )
        for i in range(DEPTH)
    ]
    upsert(
        api,
        "eager",
        steps,
        store_config={"required_keys": ["start"]},
        retry_policy={"max_retries": 2, "strategy": "FIXED", "backoff_factor": 1},
    )
    return "eager"


def report(api: httpx.Client, state: dict[str, Any], outputs: dict[str, str], **claim: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"outputs": [outputs], "lease_id": state["lease_id"]}
    if claim:
        body["claim"] = claim
    response = api.post(f"/state/{state['state_id']}/executed", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_a_chain_runs_on_claims_carried_by_the_results(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"start": "0"})
    [state] = claim_all(api, "Step", count=1)  # the only claim request: every later state comes with a result
    for step in range(DEPTH):
        assert state["identifier"] == f"step{step}" and state["inputs"] == {"n": str(step)}
        assert state["lease_id"] and state["lease_expires_at"]
        answer = report(api, state, {"n": str(step + 1)}, nodes=["Step"], max=4)
        assert answer["status"] == "EXECUTED"
        if step + 1 == DEPTH:
            assert answer["states"] == []
            break
        [state] = answer["states"]  # the child the result created, claimed in the same transaction
    finished = run(api, run_id)
    assert finished["finished"] and finished["status"] == "SUCCESS", finished
    assert [s["outputs"]["n"] for s in sorted(states(api, run_id), key=lambda s: s["identifier"])] == [
        str(i + 1) for i in range(DEPTH)
    ]


def test_batched_results_carry_claims_with_the_normal_lease_rules(api: httpx.Client, chain: str) -> None:
    run_ids = [trigger(api, chain, store={"start": str(i * 100)}) for i in range(3)]
    roots = claim_all(api, "Step", count=3)
    results = [{"state_id": s["state_id"], "lease_id": s["lease_id"], "outputs": [{"n": "x"}]} for s in roots]
    response = api.post("/states/executed", json={"results": results, "claim": {"nodes": ["Step"], "max": 2}})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [r["status"] for r in answer["results"]] == ["EXECUTED"] * 3
    eager = answer["states"]
    assert len(eager) == 2 and {s["identifier"] for s in eager} == {"step1"}
    # The third child was left for a claimer; the two handed out are held under their lease.
    [left] = claim(api, "Step")
    assert left["state_id"] not in {s["state_id"] for s in eager}
    beat = api.post(f"/state/{eager[0]['state_id']}/heartbeat", json={"lease_id": eager[0]["lease_id"]})
    assert beat.status_code == 200, beat.text
    stale = {"outputs": [{"n": "y"}], "lease_id": "not-the-lease"}
    assert api.post(f"/state/{eager[1]['state_id']}/executed", json=stale).status_code == 409
    assert {s["run_id"] for r in run_ids for s in states(api, r) if s["status"] == "QUEUED"} == set(run_ids)


def test_an_eager_claim_that_never_reached_a_runtime_runs_again_after_its_lease(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"start": "0"})
    [root] = claim_all(api, "Step", count=1)
    [lost] = report(api, root, {"n": "1"}, nodes=["Step"], max=1, lease_ms=1000)["states"]
    # The runtime died with `lost` in hand: nothing reports it, so its lease runs out and it is retried.
    [retry] = claim_all(api, "Step", count=1, timeout_s=30)
    assert retry["identifier"] == "step1" and retry["state_id"] != lost["state_id"]
    assert retry["inputs"] == lost["inputs"]
    [expired] = [s for s in by_identifier(states(api, run_id), "step1") if s["state_id"] == lost["state_id"]]
    assert expired["status"] == "RETRY_CREATED" and expired["error"].startswith("Lease expired")
    late = api.post(f"/state/{lost['state_id']}/executed", json={"outputs": [{"n": "2"}], "lease_id": lost["lease_id"]})
    assert late.status_code == 409


def test_a_result_without_claim_claims_nothing(api: httpx.Client, chain: str) -> None:
    """The published client never sends `claim`: its answers hand out no state it would not know about."""
    run_id = trigger(api, chain, store={"start": "0"})
    [root] = claim_all(api, "Step", count=1)
    answer = report(api, root, {"n": "1"})
    assert answer == {"status": "EXECUTED", "states": []}
    [child] = by_identifier(states(api, run_id), "step1")
    assert child["status"] == "CREATED"
    [claimed] = claim_all(api, "Step", count=1)
    assert claimed["state_id"] == child["state_id"]


@pytest.mark.parametrize(
    ("claim_field", "complaint"),
    [
        ({"nodes": ["Step"], "max": 0}, "max"),
        ({"nodes": [], "max": 1}, "nodes"),
        ({"nodes": ["Step"], "max": 1, "lease_ms": 10}, "lease_ms"),
        ({"max": 1}, "nodes"),
    ],
)
def test_a_bad_claim_is_refused_before_the_result_is_applied(
    api: httpx.Client, chain: str, claim_field: dict[str, Any], complaint: str
) -> None:
    run_id = trigger(api, chain, store={"start": "0"})
    [root] = claim_all(api, "Step", count=1)
    body = {"outputs": [{"n": "1"}], "lease_id": root["lease_id"], "claim": claim_field}
    response = api.post(f"/state/{root['state_id']}/executed", json=body)
    assert response.status_code == 422 and complaint in response.text, response.text
    assert by_identifier(states(api, run_id), "step0")[0]["status"] == "QUEUED"


def test_eager_claims_hold_across_replicas(
    backend: str, make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    """Made in the completing transaction, a claim carried by an answer is the database's: the other
    replica neither hands the state out again nor refuses the lease."""
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; an SQLite file belongs to one server")
    first = make_server()
    second = make_server(first.database_url)
    headers = {"x-api-key": first.api_key}
    with (
        httpx.Client(base_url=f"{first.url}/v0/namespace/{namespace}", headers=headers, timeout=30) as one,
        httpx.Client(base_url=f"{second.url}/v0/namespace/{namespace}", headers=headers, timeout=30) as two,
    ):
        upsert_chain(one, namespace)
        run_id = trigger(one, "eager", store={"start": "0"})
        [state] = claim_all(two, "Step", count=1)
        replicas = [one, two]
        for step in range(DEPTH):
            reporter = replicas[step % 2]  # each result goes to the other replica than the last
            answer = report(reporter, state, {"n": str(step + 1)}, nodes=["Step"], max=1)
            if step + 1 == DEPTH:
                break
            [state] = answer["states"]
            assert claim(replicas[(step + 1) % 2], "Step") == []  # held, not offered again elsewhere
        finished = run(two, run_id)
        assert finished["finished"] and finished["status"] == "SUCCESS", finished
