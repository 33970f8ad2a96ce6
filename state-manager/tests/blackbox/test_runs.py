"""Runs over HTTP: children, fan-out, unites, store, retries, signals, leases, namespace walls."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from .helpers import by_identifier, claim, claim_all, errored, executed, node, register, run, states, trigger, upsert


@pytest.fixture
def chain(api: httpx.Client, namespace: str) -> str:
    register(
        api, {"Split": (("text",), ("part",)), "Upper": (("part", "suffix"), ("out",)), "Join": (("x",), ("all",))}
    )
    upsert(
        api,
        "chain",
        [
            node("split", "Split", namespace, {"text": "${{ store.text }}"}, ["upper"]),
            node("upper", "Upper", namespace, {"part": "${{ split.outputs.part }}", "suffix": "-${{ store.sfx }}!"}),
        ],
        store_config={"required_keys": ["text"], "default_values": {"sfx": "d"}},
        retry_policy={"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1},
    )
    return "chain"


def test_children_get_inputs_from_outputs_and_the_store(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"text": "a b"})
    [root] = claim_all(api, "Split", count=1)
    assert root["inputs"] == {"text": "a b"}
    assert executed(api, root, {"part": "a"}, {"part": "b"}).json() == {"status": "EXECUTED", "states": []}
    children = claim_all(api, "Upper", count=2)
    assert sorted(c["inputs"]["part"] for c in children) == ["a", "b"]
    assert {c["inputs"]["suffix"] for c in children} == {"-d!"}
    for child in children:
        executed(api, child, {"out": child["inputs"]["part"].upper()})
    summary = run(api, run_id)
    assert summary["status"] == "SUCCESS" and summary["success_count"] == 4 and summary["finished"]


def test_missing_required_store_key_is_refused(api: httpx.Client, chain: str) -> None:
    response = api.post(f"/graph/{chain}/trigger", json={"store": {}})
    assert response.status_code == 400 and "text" in response.json()["detail"]
    assert api.post("/graph/nope/trigger", json={}).status_code == 404


def test_repeated_executed_is_applied_once(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    assert executed(api, root, {"part": "x"}).status_code == 200
    assert executed(api, root, {"part": "x"}).status_code == 200  # a retry after a lost response
    assert len(by_identifier(states(api, run_id), "upper")) == 1


def test_report_under_a_stale_lease_is_a_409(api: httpx.Client, chain: str) -> None:
    trigger(api, chain, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    stale = {**root, "lease_id": "not-the-lease"}
    response = executed(api, stale, {"part": "x"})
    assert response.status_code == 409 and "Lease lost" in response.json()["detail"]


def test_errors_follow_the_retry_policy(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"text": "x"})
    [first] = claim_all(api, "Split", count=1)
    assert errored(api, first, "first failure").json() == {"status": "ERRORED", "retry_created": True}
    [second] = claim_all(api, "Split", count=1)
    assert second["state_id"] != first["state_id"]
    assert errored(api, second, "second failure").json() == {"status": "ERRORED", "retry_created": False}
    found = by_identifier(states(api, run_id), "split")
    assert sorted(s["status"] for s in found) == ["ERRORED", "RETRY_CREATED"]
    assert sorted(s["retry_count"] for s in found) == [0, 1]
    assert run(api, run_id)["status"] == "FAILED"


def test_expired_lease_goes_through_the_retry_policy(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"text": "x"})
    [held] = claim(api, "Split", wait_ms=5000, lease_ms=1000)
    [retry] = claim_all(api, "Split", count=1, timeout_s=30)  # appears only once the lease has expired
    assert retry["state_id"] != held["state_id"]
    expired = next(s for s in states(api, run_id) if s["state_id"] == held["state_id"])
    assert expired["status"] == "RETRY_CREATED" and expired["error"].startswith("Lease expired")
    assert executed(api, held, {"part": "late"}).status_code == 409


def test_heartbeat_keeps_a_lease(api: httpx.Client, chain: str) -> None:
    trigger(api, chain, store={"text": "x"})
    [held] = claim(api, "Split", wait_ms=5000, lease_ms=1000)
    for _ in range(4):
        time.sleep(0.5)
        beat = api.post(f"/state/{held['state_id']}/heartbeat", json={"lease_id": held["lease_id"], "lease_ms": 1000})
        assert beat.status_code == 200, beat.text
    assert executed(api, held, {"part": "x"}).status_code == 200


def test_long_poll_claim_is_woken_by_a_new_run(api: httpx.Client, chain: str) -> None:
    timer = threading.Timer(0.3, lambda: trigger(api, chain, store={"text": "late"}))
    timer.start()
    got = claim(api, "Split", wait_ms=20_000)  # without a wake-up this would come back empty after 20 s
    timer.join()
    assert [s["inputs"]["text"] for s in got] == ["late"]


def test_delayed_start_becomes_claimable_on_its_own(api: httpx.Client, chain: str) -> None:
    trigger(api, chain, store={"text": "later"}, start_delay=1500)
    assert claim(api, "Split") == []
    got = claim(api, "Split", wait_ms=20_000)
    assert [s["inputs"]["text"] for s in got] == ["later"]


def test_prune_ends_the_branch_and_requeue_needs_a_held_state(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    response = api.post(
        f"/state/{root['state_id']}/prune", json={"data": {"why": "skip"}, "lease_id": root["lease_id"]}
    )
    assert response.status_code == 200 and response.json()["status"] == "PRUNED"
    again = api.post(f"/state/{root['state_id']}/re-enqueue-after", json={"enqueue_after": 10})
    assert again.status_code in (400, 409)  # D6: a finished state cannot be pushed back
    assert run(api, run_id)["status"] == "SUCCESS"
    assert len(states(api, run_id)) == 1


def test_requeue_after_offers_the_same_state_later(api: httpx.Client, chain: str) -> None:
    trigger(api, chain, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    response = api.post(
        f"/state/{root['state_id']}/re-enqueue-after", json={"enqueue_after": 300, "lease_id": root["lease_id"]}
    )
    assert response.status_code == 200 and response.json()["status"] == "CREATED"
    [again] = claim_all(api, "Split", count=1)
    assert again["state_id"] == root["state_id"]


def test_manual_retry_makes_a_new_attempt_once_per_key(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"text": "x"})
    for _ in range(2):
        [state] = claim_all(api, "Split", count=1)
        errored(api, state)
    failed = next(s for s in states(api, run_id) if s["status"] == "ERRORED")
    response = api.post(f"/state/{failed['state_id']}/manual-retry", json={"fanout_id": "k1"})
    assert response.status_code == 200 and response.json()["status"] == "CREATED"
    assert api.post(f"/state/{failed['state_id']}/manual-retry", json={"fanout_id": "k1"}).status_code == 409
    [retry] = claim_all(api, "Split", count=1)
    assert retry["state_id"] == response.json()["id"]
    executed(api, retry, {"part": "x"})
    [child] = claim_all(api, "Upper", count=1)
    executed(api, child, {"out": "X"})
    assert run(api, run_id)["status"] == "SUCCESS"


def test_other_namespaces_cannot_touch_a_state(api: httpx.Client, server: object, chain: str) -> None:
    trigger(api, chain, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    other = str(api.base_url).rsplit("/", 1)[0] + "/someone-else"
    for path, body in (("executed", {"outputs": []}), ("errored", {"error": "x"}), ("prune", {"data": {}})):
        response = api.post(f"{other}/state/{root['state_id']}/{path}", json=body)
        assert response.status_code == 404, (path, response.text)
    assert api.get(f"{other}/state/{root['state_id']}/secrets").status_code == 404
    assert api.post("/state/ffffffffffffffffffffffff/executed", json={"outputs": []}).status_code == 404
    assert api.post("/state/not-an-id/executed", json={"outputs": []}).status_code == 404


def test_run_views_list_graph_and_details(api: httpx.Client, chain: str) -> None:
    run_id = trigger(api, chain, store={"text": "x"})
    [root] = claim_all(api, "Split", count=1)
    executed(api, root, {"part": "x"})
    listing = api.get("/runs/1/10").json()
    assert listing["total"] >= 1 and listing["runs"][0]["run_id"] == run_id
    assert api.get("/runs/0/10").status_code == 422
    graph = api.get(f"/states/run/{run_id}/graph").json()
    assert graph["node_count"] == 2 and graph["edge_count"] == 1
    assert graph["edges"][0]["source"] == root["state_id"]
    details = api.get(f"/graph/{chain}/run/{run_id}/node/{root['state_id']}")
    assert details.status_code == 200 and details.json()["outputs"] == {"part": "x"}
    assert api.get(f"/graph/{chain}/run/{run_id}/node/xyz").status_code == 400
    assert api.get(f"/run/{run_id}/states").json()["count"] == 2
    assert api.get("/run/unknown-run").status_code == 404
