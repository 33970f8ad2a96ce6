"""Real runs on a real server walk the whole state machine of `exospherehost.statuses`, and nothing else.

Runs are driven through the wire like a runtime would (fan-out, unites, a failed next-state creation,
errors with retries, prune, re-enqueue, release, expired leases, manual retries). After every call the
run's states are read again: each state seen for the first time must be in a status a state is
created in, and each change since the last look must be an allowed move. Then every allowed move must
have been seen at least once, so a move added to ALLOWED_MOVES without a way to make it fails here;
and the run summaries and /metrics must count every status they met.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess
from exospherehost.statuses import (
    ALLOWED_MOVES,
    CANCELLED,
    FAILED,
    INITIAL,
    NEVER_STORED,
    PENDING,
    RETRIED,
    SUCCEEDED,
    StateStatus,
    can_move,
)

from .helpers import claim, claim_all, errored, executed, node, register, run, states, trigger, upsert

S = StateStatus
NODES = {"Start": (("text",), ("part", "extra")), "Work": (("part",), ("out",)), "Join": (("x",), ("all",))}
LEASE_EXPIRY_WAIT_S = 60


@dataclass
class Walk:
    """What the runs of one namespace were seen doing, look after look."""

    api: httpx.Client
    last: dict[str, dict[str, str]] = field(default_factory=dict)  # run id -> state id -> status
    moves: set[tuple[str, str]] = field(default_factory=set)
    born: set[str] = field(default_factory=set)

    def look(self, run_id: str) -> list[dict[str, Any]]:
        found = states(self.api, run_id)
        before = self.last.setdefault(run_id, {})
        now = {s["state_id"]: s["status"] for s in found}
        assert set(before) <= set(now), "a state vanished from its run"
        for state_id, status in now.items():
            if state_id not in before:
                assert status in INITIAL, f"state {state_id} appeared {status}"
                self.born.add(status)
            elif before[state_id] != status:
                assert can_move(before[state_id], status), f"state {state_id}: {before[state_id]} -> {status}"
                self.moves.add((before[state_id], status))
        self.last[run_id] = now
        return found

    def of(self, run_id: str, identifier: str, status: str) -> list[dict[str, Any]]:
        return [s for s in self.look(run_id) if s["identifier"] == identifier and s["status"] == status]


def start(walk: Walk, store: dict[str, str] | None = None) -> str:
    run_id = trigger(walk.api, "walk", store=store or {"text": "t"})
    walk.look(run_id)
    return run_id


def take(walk: Walk, run_id: str, node_name: str, count: int = 1, **extra: Any) -> list[dict[str, Any]]:
    if extra:
        got = claim(walk.api, node_name, batch_size=count, wait_ms=20_000, **extra)
        assert len(got) == count
    else:
        got = claim_all(walk.api, node_name, count=count)
    walk.look(run_id)
    return got


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def manual_retry(walk: Walk, run_id: str, state_id: str) -> None:
    ok(walk.api.post(f"/state/{state_id}/manual-retry", json={"fanout_id": uuid.uuid4().hex}))
    walk.look(run_id)


def wait_until_not_queued(walk: Walk, run_id: str, state_id: str, status: str = S.QUEUED) -> str:
    """The scheduler expires the lease (or the wait) on its own: look until it has (an event, bounded by a
    deadline)."""
    deadline = time.monotonic() + LEASE_EXPIRY_WAIT_S
    while time.monotonic() < deadline:
        walk.look(run_id)
        now = walk.last[run_id][state_id]
        if now != status:
            return now
        time.sleep(0.2)
    raise AssertionError(f"{state_id} stayed {status} for {LEASE_EXPIRY_WAIT_S} s")


def fan_out_and_unite(walk: Walk) -> str:
    """A result with two outputs (a sibling born SUCCESS), two children, then the unite of each branch."""
    run_id = start(walk)
    [root] = take(walk, run_id, "Start")
    ok(executed(walk.api, root, {"part": "a", "extra": "e"}, {"part": "b", "extra": "e"}))
    walk.look(run_id)
    for work in take(walk, run_id, "Work", count=2):
        ok(executed(walk.api, work, {"out": "o"}))
        walk.look(run_id)
    for join in take(walk, run_id, "Join", count=len(walk.of(run_id, "join", S.CREATED))):
        ok(executed(walk.api, join, {"all": "done"}))
        walk.look(run_id)
    return run_id


def next_states_fail(walk: Walk) -> str:
    """Children that cannot be built (NEXT_CREATED_ERROR, sibling born so), a retry by hand, then a unite
    whose own inputs cannot be built (born NEXT_CREATED_ERROR)."""
    run_id = start(walk)
    [root] = take(walk, run_id, "Start")
    ok(executed(walk.api, root, {"extra": "e"}, {"extra": "e"}))  # no `part`: work cannot be built
    failed = walk.of(run_id, "start", S.NEXT_CREATED_ERROR)
    assert len(failed) == 2
    manual_retry(walk, run_id, failed[0]["state_id"])
    [again] = take(walk, run_id, "Start")
    ok(executed(walk.api, again, {"part": "a"}))  # no `extra`: the unite's input cannot be built
    walk.look(run_id)
    [work] = take(walk, run_id, "Work")
    ok(executed(walk.api, work, {"out": "o"}))
    assert walk.of(run_id, "join", S.NEXT_CREATED_ERROR)
    return run_id


def errors_retries_and_prune(walk: Walk) -> str:
    """Errored with a retry left, errored for good, retried by hand, then pruned."""
    run_id = start(walk)
    for _ in range(2):
        [root] = take(walk, run_id, "Start")
        ok(errored(walk.api, root))
        walk.look(run_id)
    [gave_up] = walk.of(run_id, "start", S.ERRORED)
    manual_retry(walk, run_id, gave_up["state_id"])
    [root] = take(walk, run_id, "Start")
    ok(walk.api.post(f"/state/{root['state_id']}/prune", json={"data": {}, "lease_id": root["lease_id"]}))
    walk.look(run_id)
    return run_id


def requeue_release_and_expire(walk: Walk) -> str:
    """Offered again later, handed back, then two leases left to expire (a retry, then for good)."""
    run_id = start(walk)
    [root] = take(walk, run_id, "Start")
    body = {"enqueue_after": 1, "lease_id": root["lease_id"]}
    ok(walk.api.post(f"/state/{root['state_id']}/re-enqueue-after", json=body))
    walk.look(run_id)
    [root] = take(walk, run_id, "Start")
    ok(walk.api.post(f"/state/{root['state_id']}/release", json={"lease_id": root["lease_id"]}))
    walk.look(run_id)
    for expected in (S.RETRY_CREATED, S.ERRORED):
        [held] = take(walk, run_id, "Start", lease_ms=1000)
        assert wait_until_not_queued(walk, run_id, held["state_id"]) == expected
    return run_id


def cancelled_with_work_waiting_and_running(walk: Walk) -> str:
    """A run cancelled with one Work state held by a runtime and one waiting: both CANCELLED."""
    run_id = start(walk)
    [root] = take(walk, run_id, "Start")
    ok(executed(walk.api, root, {"part": "a", "extra": "e"}, {"part": "b", "extra": "e"}))
    walk.look(run_id)
    [held] = take(walk, run_id, "Work")
    assert ok(walk.api.post(f"/run/{run_id}/cancel"))["cancelled_states"] == 2
    walk.look(run_id)
    assert executed(walk.api, held, {"out": "late"}).status_code == 409
    walk.look(run_id)
    return run_id


def waits_for_signals(walk: Walk) -> str:
    """A wait ended by its signal, then two waits that time out (a retry, then for good)."""
    run_id = start(walk)
    [root] = take(walk, run_id, "Start")
    wait = {"name": "go", "lease_id": root["lease_id"]}
    assert ok(walk.api.post(f"/state/{root['state_id']}/wait-for-signal", json=wait))["status"] == S.WAITING
    walk.look(run_id)
    assert ok(walk.api.post(f"/run/{run_id}/signals/go", json={"k": "v"}))["woken"] == 1
    walk.look(run_id)
    for expected in (S.RETRY_CREATED, S.ERRORED):
        [held] = take(walk, run_id, "Start")
        # Seen WAITING before its second is up, as `requeue_release_and_expire` sees a 1 s lease held.
        wait = {"name": "later", "timeout_seconds": 1, "lease_id": held["lease_id"]}
        ok(walk.api.post(f"/state/{held['state_id']}/wait-for-signal", json=wait))
        walk.look(run_id)
        assert wait_until_not_queued(walk, run_id, held["state_id"], S.WAITING) == expected
    return run_id


def cancelled_while_waiting(walk: Walk) -> str:
    run_id = start(walk)
    [root] = take(walk, run_id, "Start")
    wait = {"name": "never", "lease_id": root["lease_id"]}
    ok(walk.api.post(f"/state/{root['state_id']}/wait-for-signal", json=wait))
    walk.look(run_id)
    assert ok(walk.api.post(f"/run/{run_id}/cancel"))["cancelled_states"] == 1
    walk.look(run_id)
    return run_id


def child_graphs(walk: Walk) -> str:
    """Four states of a node that names the graph `walk`, each born AWAITING_CHILD: one ends SUCCESS, one
    NEXT_CREATED_ERROR (its child's outputs lack what the next node reads), one RETRY_CREATED and its
    retry ERRORED (their child runs failed), and one CANCELLED with its run."""
    run_id = trigger(walk.api, "walk-parent", store={"text": "t"})
    walk.look(run_id)
    [root] = take(walk, run_id, "Start")
    ok(executed(walk.api, root, *({"part": part, "extra": "e"} for part in "abcd")))
    assert len(walk.of(run_id, "sub", S.AWAITING_CHILD)) == 4
    starts = {s["inputs"]["text"]: s for s in take(walk, run_id, "Start", count=4)}  # the child runs' roots
    for part in "ab":
        ok(executed(walk.api, starts[part], {"part": part, "extra": part}))
    for work in take(walk, run_id, "Work", count=2):
        ok(executed(walk.api, work, {"out": "o"}))
    for join in take(walk, run_id, "Join", count=2):
        ok(executed(walk.api, join, {"all": "done"} if join["inputs"]["x"] == "a" else {}))
    walk.look(run_id)
    held = starts["c"]
    for _attempt in range(3):  # the child's two attempts fail its run; then the retry's first
        ok(errored(walk.api, held))
        walk.look(run_id)
        [held] = take(walk, run_id, "Start")
    ok(errored(walk.api, held))
    walk.look(run_id)
    assert [s["identifier"] for s in walk.look(run_id) if s["status"] == S.ERRORED] == ["sub"]
    # `d` still awaits its child, whose root a runtime holds: the cancel takes both.
    ok(walk.api.post(f"/run/{run_id}/cancel"))
    walk.look(run_id)
    return run_id


@dataclass
class Walked:
    walk: Walk
    run_ids: list[str]
    namespace: str


@pytest.fixture(scope="module")
def walked(server: ServerProcess) -> Iterator[Walked]:
    namespace = "walk-" + uuid.uuid4().hex[:10]
    headers = {"x-api-key": server.api_key}
    with httpx.Client(base_url=f"{server.url}/v0/namespace/{namespace}", headers=headers, timeout=30) as api:
        register(api, NODES)
        upsert(
            api,
            "walk",
            [
                node("start", "Start", namespace, {"text": "${{ store.text }}"}, ["work"]),
                node("work", "Work", namespace, {"part": "${{ start.outputs.part }}"}, ["join"]),
                node(
                    "join", "Join", namespace, {"x": "${{ start.outputs.extra }}"}, unites="start", strategy="ALL_DONE"
                ),
            ],
            store_config={"required_keys": ["text"]},
            retry_policy={"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1},
        )
        upsert(
            api,
            "walk-parent",
            [
                node("start", "Start", namespace, {"text": "${{ store.text }}"}, ["sub"]),
                {
                    "graph_name": "walk",
                    "namespace": namespace,
                    "identifier": "sub",
                    "inputs": {"text": "${{ start.outputs.part }}"},
                    "next_nodes": ["after"],
                },
                node("after", "Work", namespace, {"part": "${{ sub.outputs.all }}"}),
            ],
            store_config={"required_keys": ["text"]},
            retry_policy={"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1},
        )
        walk = Walk(api)
        scenarios = (
            fan_out_and_unite,
            next_states_fail,
            errors_retries_and_prune,
            requeue_release_and_expire,
            cancelled_with_work_waiting_and_running,
            waits_for_signals,
            cancelled_while_waiting,
            child_graphs,
        )
        yield Walked(walk, [scenario(walk) for scenario in scenarios], namespace)


def test_every_allowed_move_is_made_by_real_runs(walked: Walked) -> None:
    allowed = {(source.value, target.value) for source, targets in ALLOWED_MOVES.items() for target in targets}
    assert walked.walk.moves == allowed, f"never seen: {sorted(allowed - walked.walk.moves)}"
    assert walked.walk.born == {s.value for s in INITIAL}


def test_every_status_but_the_never_stored_ones_is_met(walked: Walked) -> None:
    met = {status for run in walked.walk.last.values() for status in run.values()} | walked.walk.born
    met |= {status for move in walked.walk.moves for status in move}
    assert met == {s.value for s in StateStatus} - NEVER_STORED


def test_the_run_summary_and_graph_count_every_status(walked: Walked) -> None:
    api = walked.walk.api
    for run_id in walked.run_ids:
        seen = list(walked.walk.look(run_id))
        summary = run(api, run_id)
        expected = {
            "pending_count": sum(s["status"] in PENDING for s in seen),
            "success_count": sum(s["status"] in SUCCEEDED for s in seen),
            "errored_count": sum(s["status"] in FAILED for s in seen),
            "retried_count": sum(s["status"] in RETRIED for s in seen),
            "cancelled_count": sum(s["status"] in CANCELLED for s in seen),
            "total_count": len(seen),
        }
        assert {key: summary[key] for key in expected} == expected
        graph = ok(api.get(f"/states/run/{run_id}/graph"))
        assert list(graph["execution_summary"]) == [s.value for s in StateStatus]
        assert graph["execution_summary"] == {s.value: sum(x["status"] == s for x in seen) for s in StateStatus}


def test_metrics_count_every_status_a_result_leads_to(walked: Walked, server: ServerProcess) -> None:
    response = httpx.get(server.url + "/metrics", headers={"x-api-key": server.api_key})
    assert response.status_code == 200
    line = rf'exosphere_completions_total\{{namespace="{walked.namespace}",node="\w+",status="(\w+)"\}}'
    counted = set(re.findall(line, response.text))
    assert counted == {s.value for s in ALLOWED_MOVES[S.QUEUED] - {S.CREATED}}
