"""Child graphs, on SQLite and PostgreSQL, with a real server and, where nodes run, a real SDK runtime.

Users rely on: a node that names a graph runs it as a child run of its state, linked both ways in the
run API; the state holds no runtime while the child runs and ends with it (the child's final outputs,
each field a JSON list for a fan-out ending); a failed child run fails the state through the retry
policy, whose retry starts a new child run; cancelling the parent cancels its children; a server
killed with SIGKILL loses nothing of it; a graph whose child graphs are wrong is refused with a 400
that says what to fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until

from tests.blackbox.helpers import by_identifier, claim_all, executed, node, register, run, states, trigger, upsert

APP = Path(__file__).parent / "runtime_app.py"
Runtimes = Callable[..., subprocess.Popen[bytes]]
FAST_RETRY = {"max_retries": 3, "strategy": "LINEAR", "backoff_factor": 1}
NO_RETRY = {"max_retries": 0}


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    path = tmp_path / "executions.log"
    path.touch()
    return path


@pytest.fixture
def runtimes(server: ServerProcess, namespace: str, log_path: Path) -> Iterator[Runtimes]:
    """`runtimes(FAIL_ITEM="1")` starts one runtime process serving `runtime_app.py`'s nodes."""
    started: list[subprocess.Popen[bytes]] = []

    def start(**env_extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "EXOSPHERE_STATE_MANAGER_URI": server.url,
            "EXOSPHERE_API_KEY": server.api_key,
            "CHILD_LOG": str(log_path),
            "EXOSPHERE_LOG_LEVEL": "WARNING",
            **env_extra,
        }
        process = subprocess.Popen([sys.executable, str(APP), namespace], env=env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def _cli(server: ServerProcess, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "EXOSPHERE_NAMESPACE": namespace,
        "COLUMNS": "240",
    }
    return subprocess.run(
        [sys.executable, "-m", "exospherehost.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def child(
    identifier: str, graph_name: str, namespace: str, inputs: dict[str, str], next_nodes: list[str] | None = None
) -> dict[str, Any]:
    return {
        "graph_name": graph_name,
        "namespace": namespace,
        "identifier": identifier,
        "inputs": inputs,
        "next_nodes": next_nodes or [],
    }


def _graphs(api: httpx.Client, namespace: str) -> None:
    register(
        api,
        {"Split": (("width",), ("item",)), "Double": (("item",), ("doubled",)), "Collect": (("doubled",), ("seen",))},
    )
    upsert(api, "double", [node("double", "Double", namespace, {"item": "0"})], retry_policy=NO_RETRY)
    upsert(
        api,
        "parent",
        [
            node("split", "Split", namespace, {"width": "${{ store.width }}"}, ["work"]),
            child("work", "double", namespace, {"item": "${{ split.outputs.item }}"}, ["collect"]),
            node("collect", "Collect", namespace, {"doubled": "${{ work.outputs.doubled }}"}),
        ],
        store_config={"required_keys": ["width"]},
        retry_policy=FAST_RETRY,
    )


def test_a_fan_out_into_child_graphs_with_one_child_failing_then_retried_survives_a_server_kill(
    server: ServerProcess, api: httpx.Client, namespace: str, runtimes: Runtimes, log_path: Path
) -> None:
    _graphs(api, namespace)
    run_id = trigger(api, "parent", store={"width": "3"})
    runtime = runtimes(FAIL_ITEM="1")
    # The failed child run failed its parent state, whose retry started a new child run.
    wait_until(
        lambda: [c["status"] for c in run(api, run_id)["child_runs"]].count("FAILED") == 1,
        what="item 1's child run to fail",
    )
    server.kill()  # SIGKILL in the middle: links and completions are in the transactions
    runtime.kill()
    runtime.wait()
    server.start()
    runtimes(FAIL_ITEM="1")

    finished = run(api, run_id, wait_ms=60_000)
    assert finished["finished"] and finished["status"] == "SUCCESS", finished
    assert finished["parent_run_id"] is None
    found = states(api, run_id)
    work = by_identifier(found, "work")
    assert sorted(s["outputs"]["doubled"] for s in work if s["status"] == "SUCCESS") == ["0", "2", "4"]
    retried = [s for s in work if s["status"] == "RETRY_CREATED"]
    [failed_once] = [s for s in retried if "item 1 fails once" in s["error"]]
    assert failed_once["inputs"] == {"item": "1"}
    assert failed_once["error"].startswith("Child run ") and "of graph double failed: Double: " in failed_once["error"]
    # The kill may cost a child run a held state (its lease expires): that retries its parent state too.
    assert all("Lease expired" in s["error"] for s in retried if s is not failed_once)
    assert len(work) == 3 + len(retried)
    collected = [s["outputs"]["seen"] for s in by_identifier(found, "collect") if s["status"] == "SUCCESS"]
    assert sorted(collected) == ["0", "2", "4"]

    children = finished["child_runs"]
    assert sorted(c["status"] for c in children) == ["FAILED"] * len(retried) + ["SUCCESS"] * 3
    by_state = {c["parent_state_id"]: c for c in children}
    assert set(by_state) == {s["state_id"] for s in work}  # one child run per attempt
    assert {by_state[s["state_id"]]["status"] for s in retried} == {"FAILED"}
    for summary in children:
        assert summary["parent_run_id"] == run_id and summary["graph_name"] == "double"
        child_run = run(api, summary["run_id"])
        assert (child_run["parent_run_id"], child_run["parent_state_id"]) == (run_id, summary["parent_state_id"])
        assert child_run["child_runs"] == []

    shown = _cli(server, namespace, "run", "show", run_id)  # the tree links each state to its child runs
    assert shown.returncode == 0, shown.stderr
    for summary in children:
        assert f"child run {summary['run_id']} of graph double {summary['status']}" in shown.stdout
    shown = _cli(server, namespace, "run", "show", children[0]["run_id"])  # and each child to its parent
    assert shown.returncode == 0, shown.stderr
    assert f"child run of run {run_id} (state {children[0]['parent_state_id']})" in shown.stdout


def test_a_fan_out_ending_gives_each_output_field_as_a_json_list(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Split": (("width",), ("item",)), "Collect": (("doubled",), ("seen",))})
    upsert(api, "split-all", [node("split", "Split", namespace, {"width": "3"})])
    upsert(
        api,
        "outer",
        [
            node("start", "Collect", namespace, {"doubled": "x"}, ["inner"]),
            child("inner", "split-all", namespace, {"width": "3"}, ["after"]),
            node("after", "Collect", namespace, {"doubled": "${{ inner.outputs.item }}"}),
        ],
    )
    run_id = trigger(api, "outer")
    [start] = claim_all(api, "Collect", count=1)
    assert executed(api, start, {"seen": "x"}).status_code == 200
    [inner] = by_identifier(states(api, run_id), "inner")
    assert inner["status"] == "AWAITING_CHILD"  # no runtime holds it: nothing claims it
    [split] = claim_all(api, "Split", count=1)
    assert executed(api, split, {"item": "a"}, {"item": "b"}, {"item": "c"}).status_code == 200
    [after] = claim_all(api, "Collect", count=1)
    assert sorted(json.loads(after["inputs"]["doubled"])) == ["a", "b", "c"]
    [inner] = by_identifier(states(api, run_id), "inner")
    assert inner["status"] == "SUCCESS" and sorted(json.loads(inner["outputs"]["item"])) == ["a", "b", "c"]


def test_cancelling_a_parent_cancels_its_running_children_and_theirs(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Split": (("width",), ("item",)), "Hold": (("item",), ("item",))})
    upsert(api, "hold", [node("hold", "Hold", namespace, {"item": ""})])
    upsert(
        api,
        "middle",
        [
            node("pass", "Hold", namespace, {"item": ""}, ["deeper"]),
            child("deeper", "hold", namespace, {"item": "${{ pass.outputs.item }}"}),
        ],
    )
    upsert(
        api,
        "top",
        [
            node("split", "Split", namespace, {"width": "2"}, ["mid"]),
            child("mid", "middle", namespace, {"item": "${{ split.outputs.item }}"}),
        ],
    )
    run_id = trigger(api, "top")
    [split] = claim_all(api, "Split", count=1)
    assert executed(api, split, {"item": "a"}, {"item": "b"}).status_code == 200
    held = claim_all(api, "Hold", count=2)  # the two middle runs' first nodes
    assert executed(api, held[0], {"item": "deep"}).status_code == 200  # starts a grandchild run
    [middles] = [run(api, run_id)["child_runs"]]
    assert len(middles) == 2
    grandchildren = [g for m in middles for g in run(api, m["run_id"])["child_runs"]]
    assert len(grandchildren) == 1 and grandchildren[0]["status"] == "PENDING"

    cancelled = api.post(f"/run/{run_id}/cancel", json={"reason": "enough"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelled_states"] == 2  # its own: the two states awaiting a child
    top = run(api, run_id)
    assert top["status"] == "CANCELLED"
    for summary in [*top["child_runs"], *grandchildren]:
        again = run(api, summary["run_id"])
        assert again["status"] == "CANCELLED", again
        assert again["cancel_reason"].startswith("parent run ") and again["cancel_reason"].endswith("cancelled: enough")
    assert {s["status"] for s in states(api, run_id)} == {"SUCCESS", "CANCELLED"}
    late = executed(api, held[1], {"item": "late"})  # the runtime still holding a child's state
    assert late.status_code == 409, late.text


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (
            [child("c", "nowhere", "{ns}", {})],
            "Node 'c' names graph 'nowhere', which does not exist in namespace {ns}: upsert it first",
        ),
        (
            [child("c", "leaf", "{ns}", {})],
            "Node 'c' does not give input(s) 'item' of the first node 'leaf' of graph 'leaf'",
        ),
        (
            [child("c", "leaf", "{ns}", {"item": "1", "colour": "red"})],
            "Node 'c' gives input(s) 'colour' that the first node 'leaf' of graph 'leaf' does not have",
        ),
        (
            [{**child("c", "leaf", "{ns}", {"item": "1"}), "timeout_seconds": 5}],
            "Node 'c' names graph 'leaf': timeout_seconds does not apply to it",
        ),
        (
            [child("c", "leaf", "other-namespace", {"item": "1"})],
            "a child graph must be in the graph's own namespace ({ns})",
        ),
    ],
)
def test_a_wrong_child_graph_is_refused_with_what_to_fix(
    server: ServerProcess, api: httpx.Client, namespace: str, nodes: list[dict[str, Any]], message: str
) -> None:
    register(api, {"Hold": (("item",), ("item",))})
    upsert(api, "leaf", [node("leaf", "Hold", namespace, {"item": ""})])
    body = json.loads(
        json.dumps([node("first", "Hold", namespace, {"item": "x"}, ["c"]), *nodes]).replace("{ns}", namespace)
    )
    answer = api.put("/graph/wrong", json={"secrets": {}, "nodes": body})
    assert answer.status_code == 400, answer.text
    assert message.replace("{ns}", namespace) in answer.json()["detail"]
    assert api.get("/graph/wrong").status_code == 404  # nothing stored


def test_a_graph_that_reaches_itself_through_children_or_starts_with_one_is_refused(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Hold": (("item",), ("item",))})
    first = node("first", "Hold", namespace, {"item": "x"}, ["c"])
    itself = api.put(
        "/graph/selfish", json={"secrets": {}, "nodes": [first, child("c", "selfish", namespace, {"item": "1"})]}
    )
    assert itself.status_code == 400
    assert "Node 'c' names graph 'selfish' itself: a graph cannot reach itself through children" in itself.text
    upsert(api, "a", [node("first", "Hold", namespace, {"item": ""})])
    upsert(api, "b", [first, child("c", "a", namespace, {"item": "1"})])
    looped = api.put(
        "/graph/a",
        json={
            "secrets": {},
            "nodes": [node("first", "Hold", namespace, {"item": ""}, ["c"]), child("c", "b", namespace, {"item": "1"})],
        },
    )
    assert looped.status_code == 400
    assert "Graph 'a' reaches itself through child graphs (a -> b -> a)" in looped.json()["detail"]
    root = api.put("/graph/rooted", json={"secrets": {}, "nodes": [child("c", "a", namespace, {"item": "1"})]})
    assert root.status_code == 400
    assert "The first node 'c' cannot name a graph: a run starts with a node class" in root.json()["detail"]


def test_a_child_graph_that_cannot_start_any_more_fails_its_state_for_good_saying_why(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Hold": (("item",), ("item",))})
    upsert(api, "needy", [node("leaf", "Hold", namespace, {"item": ""})])
    upsert(
        api,
        "caller",
        [node("first", "Hold", namespace, {"item": "x"}, ["c"]), child("c", "needy", namespace, {"item": "1"})],
    )
    # Changed after the caller's upsert: its runs now need a store key that the caller's run lacks.
    upsert(api, "needy", [node("leaf", "Hold", namespace, {"item": ""})], store_config={"required_keys": ["token"]})
    run_id = trigger(api, "caller")
    [first] = claim_all(api, "Hold", count=1)
    assert executed(api, first, {"item": "x"}).status_code == 200
    [c] = by_identifier(states(api, run_id), "c")
    assert c["status"] == "ERRORED"  # for good: no new attempt can mend it
    assert c["error"] == "Child graph needy could not start: Missing store keys: ['token']"
    assert run(api, run_id)["status"] == "FAILED" and run(api, run_id)["child_runs"] == []


def test_a_child_run_ended_on_two_replicas_at_once_ends_its_parent_state_exactly_once(
    backend: str, make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; an SQLite file belongs to one server")
    first = make_server()
    second = make_server(first.database_url)
    clients = [
        httpx.Client(base_url=f"{s.url}/v0/namespace/{namespace}", headers={"x-api-key": s.api_key}, timeout=60)
        for s in (first, second)
    ]
    api = clients[0]
    register(api, {"Split": (("width",), ("item",)), "Hold": (("item",), ("item",))})
    upsert(
        api,
        "fan",
        [
            node("split", "Split", namespace, {"width": ""}, ["leaf"]),
            node("leaf", "Hold", namespace, {"item": "${{ split.outputs.item }}"}),
        ],
    )
    upsert(
        api,
        "over",
        [
            node("start", "Hold", namespace, {"item": "x"}, ["sub"]),
            child("sub", "fan", namespace, {"width": "30"}, ["after"]),
            node("after", "Hold", namespace, {"item": "${{ sub.outputs.item }}"}),
        ],
    )
    width, runs = 30, 3
    run_ids = [trigger(api, "over") for _ in range(runs)]
    for start in claim_all(api, "Hold", count=runs):
        assert executed(api, start, {"item": "x"}).status_code == 200
    for split in claim_all(api, "Split", count=runs):
        assert executed(api, split, *({"item": str(i)} for i in range(width))).status_code == 200
    leaves = claim_all(api, "Hold", count=runs * width)

    def finish(index: int) -> int:
        # Every other result goes to the other replica: the last ones of a child run race there.
        return executed(clients[index % 2], leaves[index], {"item": leaves[index]["inputs"]["item"]}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(finish, range(len(leaves)))) == {200}
    for run_id in run_ids:
        found = states(api, run_id)
        [sub] = by_identifier(found, "sub")
        assert sub["status"] == "SUCCESS"
        assert sorted(json.loads(sub["outputs"]["item"]), key=int) == [str(i) for i in range(width)]
        assert len(by_identifier(found, "after")) == 1
    for client in clients:
        client.close()


def test_a_unite_may_name_a_graph_and_a_failed_one_retried_by_hand_starts_a_new_child_run(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Split": (("width",), ("item",)), "Hold": (("item",), ("item",))})
    upsert(api, "check", [node("check", "Hold", namespace, {"item": ""})], retry_policy=NO_RETRY)
    gather = {
        **child("gather", "check", namespace, {"item": "${{ split.outputs.item }}"}),
        "unites": {"identifier": "split"},
    }
    upsert(
        api,
        "united",
        [
            node("split", "Split", namespace, {"width": "1"}, ["work"]),
            node("work", "Hold", namespace, {"item": "w"}, ["gather"]),
            gather,
        ],
        retry_policy=NO_RETRY,
    )
    run_id = trigger(api, "united")
    [split] = claim_all(api, "Split", count=1)
    assert executed(api, split, {"item": "only"}).status_code == 200
    [work] = claim_all(api, "Hold", count=1)
    assert executed(api, work, {"item": "w"}).status_code == 200  # the split's branch is done: the unite fires
    [united] = by_identifier(states(api, run_id), "gather")
    assert united["status"] == "AWAITING_CHILD"
    [check] = claim_all(api, "Hold", count=1)
    assert check["inputs"] == {"item": "only"}
    assert (
        api.post(f"/state/{check['state_id']}/errored", json={"error": "no", "lease_id": check["lease_id"]}).status_code
        == 200
    )
    [united] = by_identifier(states(api, run_id), "gather")
    assert united["status"] == "ERRORED" and united["error"].endswith("failed: Hold: no")
    assert run(api, run_id)["status"] == "FAILED"

    retried = api.post(f"/state/{united['state_id']}/manual-retry", json={"fanout_id": "again"})
    assert retried.status_code == 200, retried.text
    [check] = claim_all(api, "Hold", count=1)  # the new attempt's own child run
    assert executed(api, check, {"item": "fine"}).status_code == 200
    finished = run(api, run_id, wait_ms=30_000)
    assert finished["status"] == "SUCCESS"
    assert sorted(c["status"] for c in finished["child_runs"]) == ["FAILED", "SUCCESS"]
    assert [s["outputs"] for s in by_identifier(states(api, run_id), "gather") if s["status"] == "SUCCESS"] == [
        {"item": "fine"}
    ]


def test_a_child_run_cancelled_by_itself_fails_its_parent_state_through_the_retry_policy(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Hold": (("item",), ("item",))})
    upsert(api, "inner", [node("inner", "Hold", namespace, {"item": ""})])
    upsert(
        api,
        "outer-retry",
        [node("first", "Hold", namespace, {"item": "x"}, ["c"]), child("c", "inner", namespace, {"item": "1"})],
        retry_policy=FAST_RETRY,
    )
    run_id = trigger(api, "outer-retry")
    [first] = claim_all(api, "Hold", count=1)
    assert executed(api, first, {"item": "x"}).status_code == 200
    [started] = run(api, run_id)["child_runs"]
    cancelled = api.post(f"/run/{started['run_id']}/cancel", json={"reason": "not this one"})
    assert cancelled.status_code == 200, cancelled.text
    attempts = by_identifier(states(api, run_id), "c")
    assert sorted(s["status"] for s in attempts) == ["AWAITING_CHILD", "RETRY_CREATED"]
    [gone] = [s for s in attempts if s["status"] == "RETRY_CREATED"]
    assert gone["error"] == f"Child run {started['run_id']} of graph inner was cancelled (not this one)"
    children = run(api, run_id)["child_runs"]
    assert [c["status"] for c in children] == ["CANCELLED", "PENDING"]  # the retry's own child run
    assert run(api, run_id)["status"] == "PENDING"
