"""Cancelling a run: by hand (API, SDK), with nodes executing in a real runtime, on SQLite and PostgreSQL.

Users rely on: every unfinished state becomes CANCELLED at once; executing nodes are cancelled by their
runtime within a heartbeat interval; whatever arrives for the run afterwards is refused with 409 and
applied nowhere (no child, no unite); a second cancel answers the same; a finished run is a 409 that
names its status; an unknown run is a 404.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until
from exospherehost import GraphNodeModel, StateManager
from exospherehost.errors import NotFoundError

from tests.blackbox.helpers import (
    by_identifier,
    claim,
    claim_all,
    errored,
    executed,
    node,
    register,
    run,
    states,
    trigger,
    upsert,
)
from tests.runcontrol.conftest import log_lines

WIDTH = 8
WORKERS = 4  # runtime_app.py
REQUIRED = {"required_keys": ["width"]}


def _fan_out_graph(api: httpx.Client, namespace: str, graph: str = "fan") -> None:
    upsert(
        api,
        graph,
        [
            node("plan", "Plan", namespace, {"width": "${{ store.width }}"}, ["split"]),
            node("split", "Split", namespace, {"width": "${{ plan.outputs.width }}"}, ["work"]),
            node("work", "Work", namespace, {"item": "${{ split.outputs.item }}"}, ["merge"]),
            node("merge", "Merge", namespace, {"width": "${{ store.width }}"}, unites="plan"),
        ],
        store_config=REQUIRED,
    )


def _cancel(api: httpx.Client, run_id: str, **body: Any) -> httpx.Response:
    return api.post(f"/run/{run_id}/cancel", json=body or None)


def test_cancel_mid_fan_out_stops_executing_nodes_and_nothing_of_the_run_goes_on(
    api: httpx.Client, namespace: str, runtime: subprocess.Popen[bytes], log_path: Path
) -> None:
    wait_until(lambda: api.get("/nodes/").json()["count"] == 5, what="the runtime to register")
    _fan_out_graph(api, namespace)
    run_id = trigger(api, "fan", store={"width": str(WIDTH)})
    started = lambda: [line for line in log_lines(log_path) if line.startswith("start work-")]  # noqa: E731
    wait_until(lambda: len(started()) == WORKERS, what="every worker to execute a Work state")

    answer = _cancel(api, run_id, reason="wrong input")
    assert answer.status_code == 200, answer.text
    cancelled = answer.json()
    # The executing Work states and the ones waiting for a worker; plan and split had succeeded.
    assert cancelled == {"run_id": run_id, "status": "CANCELLED", "cancelled_states": WIDTH, "reason": "wrong input"}

    # The runtime learns from its next heartbeat (every second) and cancels each `execute`. States it
    # had claimed ahead for a free worker may start meanwhile; the same heartbeat round stops them.
    def cancelled_all_started() -> bool:
        lines = log_lines(log_path)
        begun = sorted(line.split()[1] for line in lines if line.startswith("start work-"))
        return begun == sorted(line.split()[1] for line in lines if line.startswith("cancelled work-"))

    wait_until(cancelled_all_started, what="the runtime to cancel every Work it started")
    summary = run(api, run_id)
    assert summary["status"] == "CANCELLED" and summary["finished"] is True
    assert summary["cancelled_count"] == WIDTH and summary["pending_count"] == 0
    assert summary["cancel_reason"] == "wrong input"
    found = states(api, run_id)
    assert {s["status"] for s in by_identifier(found, "work")} == {"CANCELLED"}
    assert all(s["error"] == "Run cancelled: wrong input" for s in by_identifier(found, "work"))
    assert by_identifier(found, "merge") == [] and "merge" not in log_lines(log_path)
    begun = [line for line in log_lines(log_path) if line.startswith("start work-")]
    assert len(begun) == len(set(begun)) <= WIDTH  # none claimed again
    assert _cancel(api, run_id, reason="another reason").json() == cancelled  # twice: the same answer


def test_results_sent_after_a_cancel_are_refused_and_create_nothing(api: httpx.Client, namespace: str) -> None:
    register(api, {"Plan": (("width",), ("width",)), "Split": (("width",), ("item",)), "Work": (("item",), ("out",))})
    register(api, {"Merge": (("width",), ("total",))})
    _fan_out_graph(api, namespace)
    run_id = trigger(api, "fan", store={"width": "3"})
    [plan] = claim_all(api, "Plan", count=1)
    assert executed(api, plan, {"width": "3"}).status_code == 200
    [split] = claim_all(api, "Split", count=1)
    assert executed(api, split, {"item": "0"}, {"item": "1"}, {"item": "2"}).status_code == 200
    work = claim_all(api, "Work", count=3)

    assert _cancel(api, run_id).json()["cancelled_states"] == 3
    heartbeat = api.post(f"/state/{work[0]['state_id']}/heartbeat", json={"lease_id": work[0]["lease_id"]})
    assert heartbeat.status_code == 409 and "CANCELLED" in heartbeat.json()["detail"]
    late = executed(api, work[0], {"out": "0"})
    assert late.status_code == 409 and "CANCELLED" in late.json()["detail"], late.text
    batch = api.post(
        "/states/executed",
        json={
            "results": [{"state_id": work[1]["state_id"], "outputs": [{"out": "1"}], "lease_id": work[1]["lease_id"]}]
        },
    )
    assert batch.status_code == 200 and batch.json()["results"][0]["status_code"] == 409, batch.text
    assert errored(api, work[2]).status_code == 409
    prune = api.post(f"/state/{work[2]['state_id']}/prune", json={"data": {}, "lease_id": work[2]["lease_id"]})
    assert prune.status_code == 409
    found = states(api, run_id)
    assert {s["status"] for s in by_identifier(found, "work")} == {"CANCELLED"}
    assert by_identifier(found, "merge") == []  # the unite never fires
    assert claim(api, "Work", "Merge") == []
    assert run(api, run_id)["cancel_reason"] is None


def test_a_finished_run_an_unknown_run_and_a_retry_in_a_cancelled_run_are_refused(
    api: httpx.Client, namespace: str
) -> None:
    register(api, {"Plan": (("width",), ("width",))})
    plan = [node("plan", "Plan", namespace, {"width": "${{ store.width }}"})]
    upsert(api, "one", plan, store_config=REQUIRED, retry_policy={"max_retries": 0})
    done = trigger(api, "one", store={"width": "1"})
    [state] = claim_all(api, "Plan", count=1)
    assert errored(api, state, "bad").status_code == 200
    refused = _cancel(api, done)
    assert refused.status_code == 409 and f"Run {done} is FAILED" in refused.json()["detail"]
    assert _cancel(api, "no-such-run").status_code == 404
    assert (
        api.post(f"/run/{done}/cancel", content=b"{", headers={"content-type": "application/json"}).status_code == 422
    )

    waiting = trigger(api, "one", store={"width": "1"})
    assert _cancel(api, waiting).json()["cancelled_states"] == 1
    [cancelled] = states(api, waiting)
    retry = api.post(f"/state/{cancelled['state_id']}/manual-retry", json={"fanout_id": "again"})
    assert retry.status_code == 409
    listed = api.get("/runs/1/10", params={"status": "CANCELLED"}).json()
    assert [r["run_id"] for r in listed["runs"]] == [waiting]
    assert listed["runs"][0]["cancelled_count"] == 1


def test_the_python_sdk_cancels_a_run(server: ServerProcess, api: httpx.Client, namespace: str) -> None:
    register(api, {"Plan": (("width",), ("width",))})
    upsert(api, "one", [node("plan", "Plan", namespace, {"width": "${{ store.width }}"})], store_config=REQUIRED)

    async def scenario() -> None:
        async with StateManager(namespace, state_manager_uri=server.url, key=server.api_key) as sm:
            run_id = (await sm.trigger("one", store={"width": "1"}))["run_id"]
            answer = await sm.cancel_run(run_id, reason="not needed")
            assert answer["status"] == "CANCELLED" and answer["cancelled_states"] == 1
            assert await sm.cancel_run(run_id) == answer
            got = await sm.get_run(run_id)
            assert got["status"] == "CANCELLED" and got["cancel_reason"] == "not needed"
            with pytest.raises(NotFoundError):
                await sm.cancel_run("unknown-run")
            late = (await sm.trigger("one", store={"width": "1"}, deadline_seconds=0.5))["run_id"]
            ended = await sm.wait_for_run(late, timeout=60)
            assert ended["status"] == "CANCELLED" and ended["cancel_reason"] == "deadline exceeded"
            graph = await sm.upsert_graph(
                "timed",
                [GraphNodeModel(node_name="Plan", namespace=namespace, identifier="plan", inputs={"width": "1"})],
                {},
                timeout_seconds=5,
                deadline_seconds=60,
            )
            assert (graph["timeout_seconds"], graph["deadline_seconds"]) == (5, 60)

    asyncio.run(scenario())
