"""`unites` over HTTP: fires once, whatever ends the last branch (D8), on direct predecessors (D9), readable (D10)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from exosphere_testing import ServerProcess

from .helpers import (
    by_identifier,
    claim,
    claim_all,
    counts_match_states,
    errored,
    executed,
    node,
    register,
    run,
    states,
    trigger,
    upsert,
)


@pytest.fixture
def fan_graph(api: httpx.Client, namespace: str) -> str:
    """plan -> split (fan-out) -> work -> merge (unites plan) -> after (reads merge's output)."""
    register(
        api,
        {
            "Plan": (("n",), ("n",)),
            "Split": (("n",), ("item",)),
            "Work": (("item",), ("out",)),
            "Merge": (("n",), ("total",)),
            "After": (("total",), ("done",)),
        },
    )
    upsert(
        api,
        "fan",
        [
            node("plan", "Plan", namespace, {"n": "${{ store.n }}"}, ["split"]),
            node("split", "Split", namespace, {"n": "${{ plan.outputs.n }}"}, ["work"]),
            node("work", "Work", namespace, {"item": "${{ split.outputs.item }}"}, ["merge"]),
            node(
                "merge",
                "Merge",
                namespace,
                {"n": "${{ plan.outputs.n }}"},
                ["after"],
                unites="plan",
                strategy="ALL_DONE",
            ),
            node("after", "After", namespace, {"total": "${{ merge.outputs.total }}"}),
        ],
        store_config={"required_keys": ["n"]},
        retry_policy={"max_retries": 0},
    )
    return "fan"


def _start(api: httpx.Client, graph: str, width: int) -> tuple[str, list[dict[str, object]]]:
    run_id = trigger(api, graph, store={"n": str(width)})
    [plan] = claim_all(api, "Plan", count=1)
    executed(api, plan, {"n": str(width)})
    [split] = claim_all(api, "Split", count=1)
    executed(api, split, *({"item": str(i)} for i in range(width)))
    return run_id, claim_all(api, "Work", count=width)


def test_unite_fires_once_after_every_branch_and_downstream_reads_its_outputs(
    api: httpx.Client, fan_graph: str
) -> None:
    run_id, works = _start(api, fan_graph, 4)
    for work in works[:-1]:
        executed(api, work, {"out": "x"})
        assert claim(api, "Merge") == []  # still waiting for the last branch
    executed(api, works[-1], {"out": "x"})
    [merge] = claim_all(api, "Merge", count=1)
    assert merge["inputs"] == {"n": "4"}
    executed(api, merge, {"total": "4"})
    [after] = claim_all(api, "After", count=1)
    assert after["inputs"] == {"total": "4"}  # D10: a unite node's outputs are readable downstream
    executed(api, after, {"done": "yes"})
    assert run(api, run_id)["status"] == "SUCCESS"
    assert len(by_identifier(states(api, run_id), "merge")) == 1


def test_unite_fires_when_the_last_branch_errors_or_is_pruned(api: httpx.Client, fan_graph: str) -> None:
    run_id, works = _start(api, fan_graph, 3)
    executed(api, works[0], {"out": "x"})
    errored(api, works[1], "gave up")  # no retries: ERRORED for good
    prune = api.post(f"/state/{works[2]['state_id']}/prune", json={"data": {}, "lease_id": works[2]["lease_id"]})
    assert prune.status_code == 200
    [merge] = claim_all(api, "Merge", count=1)  # D8: the unite is re-checked on every final status
    executed(api, merge, {"total": "1"})
    [after] = claim_all(api, "After", count=1)
    executed(api, after, {"done": "y"})
    assert run(api, run_id)["status"] == "FAILED"  # one branch errored


def test_all_success_unite_waits_for_a_retried_branch(api: httpx.Client, namespace: str) -> None:
    register(api, {"A": ((), ("v",)), "B": (("v",), ("w",)), "U": (("v",), ("z",))})
    upsert(
        api,
        "strict",
        [
            node("a", "A", namespace, {}, ["b"]),
            node("b", "B", namespace, {"v": "${{ a.outputs.v }}"}, ["u"]),
            node("u", "U", namespace, {"v": "${{ a.outputs.v }}"}, unites="a"),
        ],
        retry_policy={"max_retries": 1, "strategy": "FIXED", "backoff_factor": 1},
    )
    run_id = trigger(api, "strict")
    [a] = claim_all(api, "A", count=1)
    executed(api, a, {"v": "1"}, {"v": "2"})  # two `a` states, each with its own unite
    bs = claim_all(api, "B", count=2)
    errored(api, bs[0], "transient")
    executed(api, bs[1], {"w": "ok"})
    [u_first] = claim_all(api, "U", count=1)  # the branch that succeeded completes its own `a`
    [b_retry] = claim_all(api, "B", count=1)
    assert claim(api, "U") == []
    executed(api, b_retry, {"w": "ok"})
    [u_second] = claim_all(api, "U", count=1)
    assert {u_first["inputs"]["v"], u_second["inputs"]["v"]} == {"1", "2"}
    executed(api, u_first, {"z": "1"})
    executed(api, u_second, {"z": "2"})
    assert run(api, run_id)["status"] == "SUCCESS"


def test_unite_on_the_direct_predecessor_runs_once_per_predecessor_state(api: httpx.Client, namespace: str) -> None:
    register(api, {"P": ((), ("v",)), "Q": (("v",), ("w",))})
    upsert(
        api,
        "direct",
        [
            node("p", "P", namespace, {}, ["q"]),
            node("q", "Q", namespace, {"v": "${{ p.outputs.v }}"}, unites="p"),
        ],
    )
    run_id = trigger(api, "direct")
    [p] = claim_all(api, "P", count=1)
    executed(api, p, {"v": "1"}, {"v": "2"}, {"v": "3"})  # D9: works, one unite per `p` state
    qs = claim_all(api, "Q", count=3)
    assert sorted(q["inputs"]["v"] for q in qs) == ["1", "2", "3"]
    for q in qs:
        executed(api, q, {"w": "ok"})
    assert run(api, run_id)["status"] == "SUCCESS"


def test_unite_fires_exactly_once_when_branches_finish_concurrently(api: httpx.Client, fan_graph: str) -> None:
    run_id, works = _start(api, fan_graph, 24)
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda w: executed(api, w, {"out": "x"}).status_code, works))
    assert answers == [200] * 24
    [merge] = claim_all(api, "Merge", count=1)
    assert claim(api, "Merge", wait_ms=500) == []
    assert len(by_identifier(states(api, run_id), "merge")) == 1
    assert merge["inputs"] == {"n": "24"}


def test_join_without_unites_may_not_read_one_branch_only(api: httpx.Client, namespace: str) -> None:
    register(api, {"R": ((), ("v",)), "L": (("v",), ("l",)), "M": (("v",), ("m",)), "J": (("x",), ())})
    response = api.put(
        "/graph/join",
        json={
            "secrets": {},
            "nodes": [
                node("r", "R", namespace, {}, ["l", "m"]),
                node("l", "L", namespace, {"v": "${{ r.outputs.v }}"}, ["j"]),
                node("m", "M", namespace, {"v": "${{ r.outputs.v }}"}, ["j"]),
                node("j", "J", namespace, {"x": "${{ l.outputs.l }}"}),
            ],
        },
    )
    assert response.status_code == 400  # D11: `l` is not an ancestor of `j` on every path
    assert "'l'" in response.json()["detail"]


def test_an_outer_unite_waits_for_the_inner_unite_below_it(api: httpx.Client, namespace: str) -> None:
    register(api, {"A": ((), ("v",)), "B": ((), ("v",)), "C": ((), ("v",)), "U1": ((), ("v",)), "U0": ((), ("v",))})
    upsert(
        api,
        "nested",
        [  # the outer unite is declared first: order must not matter
            node("u0", "U0", namespace, {}, unites="a", strategy="ALL_DONE"),
            node("a", "A", namespace, {}, ["b"]),
            node("b", "B", namespace, {}, ["c"]),
            node("c", "C", namespace, {}, ["u1"]),
            node("u1", "U1", namespace, {}, ["u0"], unites="b", strategy="ALL_DONE"),
        ],
    )
    run_id = trigger(api, "nested")
    for name in ("A", "B", "C"):
        [state] = claim_all(api, name, count=1)
        executed(api, state, {"v": name})
    assert claim(api, "U0") == []  # u1 still has to run below `a`
    [u1] = claim_all(api, "U1", count=1)
    executed(api, u1, {"v": "u1"})
    [u0] = claim_all(api, "U0", count=1)
    executed(api, u0, {"v": "u0"})
    assert run(api, run_id)["status"] == "SUCCESS"
    assert len(by_identifier(states(api, run_id), "u0")) == 1


def test_a_fan_out_wider_than_every_piece_of_its_write_is_whole(
    api: httpx.Client, fan_graph: str, server: ServerProcess
) -> None:
    """1,300 branches: built across several turns of the event loop, written 250 rows a statement (on
    SQLite in a worker thread, committed there too), and still one transaction: every branch, its
    child and the kept counts are there, and the unite fires once."""
    width = 1300
    run_id, works = _start(api, fan_graph, width)
    assert sorted(int(w["inputs"]["item"]) for w in works) == list(range(width))
    counts_match_states(api, server.database_url or "", run_id)
    results = [{"state_id": w["state_id"], "outputs": [{"out": "x"}], "lease_id": w["lease_id"]} for w in works]
    for start in range(0, width, 500):
        assert api.post("/states/executed", json={"results": results[start : start + 500]}).status_code == 200
    [merge] = claim_all(api, "Merge", count=1)
    executed(api, merge, {"total": str(width)})
    [after] = claim_all(api, "After", count=1)
    executed(api, after, {"done": "y"})
    assert run(api, run_id)["status"] == "SUCCESS"
    counts_match_states(api, server.database_url or "", run_id)
