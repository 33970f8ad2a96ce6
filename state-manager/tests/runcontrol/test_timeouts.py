"""Time-outs, deadlines and nodes no runtime serves, on SQLite and PostgreSQL.

Users rely on: an attempt that runs past its node's `timeout_seconds` fails with `Timed out after N s`
through the retry policy, its runtime cancels the `execute`, and a late result is refused; a run past
its deadline is cancelled with the reason `deadline exceeded`; a state that waits for a node no runtime
asks for makes the run API and `/metrics` say `no runtime serves node X (namespace N)`, and stays waiting.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from exosphere_testing import ServerProcess, wait_until

from tests.blackbox.helpers import claim_all, executed, node, register, run, states, trigger, upsert
from tests.runcontrol.conftest import log_lines

NAME = {"required_keys": ["name"]}
QUICK_RETRY = {"max_retries": 1, "strategy": "FIXED", "backoff_factor": 10}


def _sleepy_graph(api: httpx.Client, namespace: str, **extra: object) -> None:
    sleepy = node("sleepy", "Sleepy", namespace, {"name": "${{ store.name }}"})
    upsert(api, "sleepy", [sleepy], store_config=NAME, retry_policy=QUICK_RETRY, **extra)


def test_a_node_past_its_time_out_is_retried_then_fails_and_its_runtime_cancels_it(
    api: httpx.Client, namespace: str, runtime: subprocess.Popen[bytes], log_path: Path
) -> None:
    wait_until(lambda: api.get("/nodes/").json()["count"] == 5, what="the runtime to register")
    sleepy = node("sleepy", "Sleepy", namespace, {"name": "${{ store.name }}"})
    sleepy["timeout_seconds"] = 1
    graph = upsert(api, "sleepy", [sleepy], store_config=NAME, retry_policy=QUICK_RETRY)
    assert graph["nodes"][0]["timeout_seconds"] == 1
    run_id = trigger(api, "sleepy", store={"name": "a"})

    finished = run(api, run_id, wait_ms=60_000)
    assert finished["status"] == "FAILED", finished
    attempts = sorted(states(api, run_id), key=lambda s: s["retry_count"])
    assert [(s["status"], s["error"]) for s in attempts] == [
        ("RETRY_CREATED", "Timed out after 1 s"),
        ("ERRORED", "Timed out after 1 s"),
    ]
    # The runtime heard it from its heartbeat and cancelled both executions.
    wait_until(lambda: log_lines(log_path).count("cancelled sleepy-a") == 2, what="the runtime to cancel both attempts")


def test_the_graph_time_out_applies_to_its_nodes_and_a_late_result_is_refused(
    api: httpx.Client, namespace: str
) -> None:
    register(api, {"Sleepy": (("name",), ("name",))})
    graph = upsert(
        api,
        "sleepy",
        [node("sleepy", "Sleepy", namespace, {"name": "${{ store.name }}"})],
        store_config=NAME,
        retry_policy={"max_retries": 0},
        timeout_seconds=0.5,
    )
    assert graph["timeout_seconds"] == 0.5
    run_id = trigger(api, "sleepy", store={"name": "b"})
    [state] = claim_all(api, "Sleepy", count=1)
    assert run(api, run_id, wait_ms=30_000)["status"] == "FAILED"
    [failed] = states(api, run_id)
    assert failed["error"] == "Timed out after 0.5 s"
    late = executed(api, state, {"name": "b"})
    assert late.status_code == 409, late.text
    assert states(api, run_id) == [failed]  # nothing of the late result applied


def test_a_run_past_its_deadline_is_cancelled(api: httpx.Client, namespace: str) -> None:
    register(api, {"Sleepy": (("name",), ("name",))})
    _sleepy_graph(api, namespace, deadline_seconds=600)
    run_id = trigger(api, "sleepy", store={"name": "c"}, deadline_seconds=0.5)  # the trigger's wins
    claim_all(api, "Sleepy", count=1)  # held by a "runtime" that never answers
    finished = run(api, run_id, wait_ms=30_000)
    assert finished["status"] == "CANCELLED" and finished["cancel_reason"] == "deadline exceeded", finished
    assert [s["status"] for s in states(api, run_id)] == ["CANCELLED"]


def test_the_graph_deadline_applies_to_runs_triggered_without_one(api: httpx.Client, namespace: str) -> None:
    register(api, {"Sleepy": (("name",), ("name",))})
    _sleepy_graph(api, namespace, deadline_seconds=0.5)
    run_id = trigger(api, "sleepy", store={"name": "d"})
    finished = run(api, run_id, wait_ms=30_000)
    assert finished["status"] == "CANCELLED" and finished["cancel_reason"] == "deadline exceeded", finished


def test_a_run_that_ends_before_its_deadline_is_not_touched(api: httpx.Client, namespace: str) -> None:
    register(api, {"Sleepy": (("name",), ("name",))})
    _sleepy_graph(api, namespace)
    run_id = trigger(api, "sleepy", store={"name": "e"}, deadline_seconds=1)
    [state] = claim_all(api, "Sleepy", count=1)
    assert executed(api, state, {"name": "e"}).status_code == 200
    # A later run's deadline passing shows that the scheduler has dealt with the earlier one.
    later = trigger(api, "sleepy", store={"name": "f"}, deadline_seconds=1.5)
    assert run(api, later, wait_ms=30_000)["status"] == "CANCELLED"
    assert run(api, run_id)["status"] == "SUCCESS"


def test_a_node_no_runtime_serves_is_named_by_the_run_and_metrics_and_its_state_waits(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    register(api, {"Sleepy": (("name",), ("name",))})
    _sleepy_graph(api, namespace)
    run_id = trigger(api, "sleepy", store={"name": "g"})
    warning = f"no runtime serves node Sleepy (namespace {namespace})"
    wait_until(lambda: run(api, run_id)["warnings"] == [warning], what="the run to name the unserved node")

    metrics = httpx.get(server.url + "/metrics", headers={"x-api-key": server.api_key}).text
    assert f'exosphere_unserved_node_states{{namespace="{namespace}",node="Sleepy"}} 1.0' in metrics
    [waiting] = states(api, run_id)
    assert waiting["status"] == "CREATED"
    shown = subprocess.run(
        [sys.executable, "-m", "exospherehost.cli", "run", "show", run_id],
        env={
            **os.environ,
            "EXOSPHERE_STATE_MANAGER_URI": server.url,
            "EXOSPHERE_API_KEY": server.api_key,
            "EXOSPHERE_NAMESPACE": namespace,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert f"warning: {warning}" in shown.stdout, shown

    # A runtime that asks for the node takes the warning away.
    claim_all(api, "Sleepy", count=1)
    assert run(api, run_id)["warnings"] == []
