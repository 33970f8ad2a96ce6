"""Waiting for a signal (human in the loop), on SQLite and PostgreSQL, with real runtimes and a real CLI.

Users rely on: a node that raises `WaitForSignal` leaves its state WAITING without a runtime; the wait
survives a server killed with SIGKILL and a runtime replaced; `exosphere signal send` makes every
waiting state run again with the payload; a signal sent before the wait started is delivered when it
does; a wait that times out fails its attempt through the retry policy; cancelling a run ends its waits;
a signal to an unknown run is a 404, a malformed one a 422, one to a finished run a 409.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from exosphere_testing import ServerProcess, wait_until

from tests.blackbox.helpers import by_identifier, node, register, run, states, trigger, upsert
from tests.signals.conftest import log_lines

Runtimes = Callable[[], subprocess.Popen[bytes]]
TIMEOUT = "${{ store.timeout }}"


def _approval_graph(api: httpx.Client, namespace: str, graph: str = "approve", **extra: Any) -> None:
    # Registered here too, so that a graph can be made before any runtime runs (the runtime's own
    # registration, the same nodes, changes nothing).
    register(api, {"Split": (("width",), ("item",)), "Approve": (("item", "timeout"), ("item", "approved", "by"))})
    upsert(
        api,
        graph,
        [
            node("split", "Split", namespace, {"width": "${{ store.width }}"}, ["approve"]),
            node("approve", "Approve", namespace, {"item": "${{ split.outputs.item }}", "timeout": TIMEOUT}),
        ],
        store_config={"required_keys": ["width"], "default_values": {"timeout": ""}},
        **extra,
    )


def _registered(api: httpx.Client) -> None:
    wait_until(lambda: api.get("/nodes/").json()["count"] == 2, what="the runtime to register")


def _waiting(api: httpx.Client, run_id: str, count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        nonlocal found
        found = [s for s in by_identifier(states(api, run_id), "approve") if s["status"] == "WAITING"]
        return len(found) == count

    wait_until(enough, what=f"{count} states to wait for the signal")
    return found


def _cli(server: ServerProcess, namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "EXOSPHERE_NAMESPACE": namespace,
    }
    return subprocess.run(
        [sys.executable, "-m", "exospherehost.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_wait_survives_a_server_kill_and_a_new_runtime_and_the_cli_signal_resumes_every_waiting_state(
    server: ServerProcess, api: httpx.Client, namespace: str, runtimes: Runtimes, log_path: Path
) -> None:
    first = runtimes()
    _registered(api)
    _approval_graph(api, namespace)
    run_id = trigger(api, "approve", store={"width": "3"})
    waiting = _waiting(api, run_id, 3)
    assert {(s["waiting_for"], s["wait_timeout_at"], s["signal"]) for s in waiting} == {("approval", None, None)}
    assert run(api, run_id)["status"] == "PENDING"

    server.kill()  # SIGKILL while every approval waits
    first.kill()
    first.wait()
    server.start()
    runtimes()  # a new runtime: nothing of the wait lived in the old one
    assert len(_waiting(api, run_id, 3)) == 3
    shown = _cli(server, namespace, "run", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("waiting for signal approval") == 3

    sent = _cli(server, namespace, "signal", "send", run_id, "approval", "approved=yes", "by=ada")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.strip() == f"signal approval sent to run {run_id}: 3 states woken"

    finished = run(api, run_id, wait_ms=60_000)
    assert finished["finished"] and finished["status"] == "SUCCESS", finished
    approved = by_identifier(states(api, run_id), "approve")
    assert sorted(s["outputs"]["item"] for s in approved) == ["0", "1", "2"]
    assert {(s["status"], s["outputs"]["approved"], s["outputs"]["by"], s["attempts"]) for s in approved} == {
        ("SUCCESS", "yes", "ada", 2)  # claimed twice: once to wait, once with the signal
    }
    assert {(s["signal"]["approved"], s["waiting_for"]) for s in approved} == {("yes", None)}
    lines = log_lines(log_path)
    assert sorted(line for line in lines if line.startswith("signal")) == [
        f"signal {i} approved=yes,by=ada" for i in range(3)
    ]


def test_a_signal_sent_before_the_wait_is_delivered_when_the_wait_starts(
    server: ServerProcess, api: httpx.Client, namespace: str, runtimes: Runtimes, log_path: Path
) -> None:
    _approval_graph(api, namespace, "early")
    run_id = trigger(api, "early", store={"width": "1"})  # no runtime yet: nothing waits
    answer = api.post(f"/run/{run_id}/signals/approval", json={"approved": "early"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"run_id": run_id, "name": "approval", "woken": 0}

    runtimes()
    finished = run(api, run_id, wait_ms=60_000)
    assert finished["status"] == "SUCCESS", finished
    [approved] = by_identifier(states(api, run_id), "approve")
    assert approved["outputs"]["approved"] == "early"
    assert [line for line in log_lines(log_path) if line.startswith(("wait", "signal"))] == [
        "wait 0",
        "signal 0 approved=early",
    ]


def test_a_wait_that_times_out_fails_its_attempt_through_the_retry_policy(
    api: httpx.Client, namespace: str, runtimes: Runtimes, log_path: Path
) -> None:
    runtimes()
    _registered(api)
    _approval_graph(api, namespace, "late", retry_policy={"max_retries": 1, "backoff_factor": 1})
    run_id = trigger(api, "late", store={"width": "1", "timeout": "0.2"})
    finished = run(api, run_id, wait_ms=60_000)
    assert finished["finished"] and finished["status"] == "FAILED", finished
    approve = by_identifier(states(api, run_id), "approve")
    assert sorted((s["status"], s["error"]) for s in approve) == [
        ("ERRORED", "Timed out waiting for signal approval"),
        ("RETRY_CREATED", "Timed out waiting for signal approval"),
    ]
    assert log_lines(log_path).count("wait 0") == 2  # the retry waited again


def test_cancelling_a_run_ends_its_waits_and_a_signal_after_it_is_refused(
    api: httpx.Client, namespace: str, runtimes: Runtimes
) -> None:
    runtimes()
    _registered(api)
    _approval_graph(api, namespace, "abandoned")
    run_id = trigger(api, "abandoned", store={"width": "2"})
    _waiting(api, run_id, 2)
    cancelled = api.post(f"/run/{run_id}/cancel", json={"reason": "nobody will approve"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["cancelled_states"] == 2
    approve = by_identifier(states(api, run_id), "approve")
    assert {(s["status"], s["waiting_for"], s["error"]) for s in approve} == {
        ("CANCELLED", None, "Run cancelled: nobody will approve")
    }
    assert run(api, run_id)["status"] == "CANCELLED"
    late = api.post(f"/run/{run_id}/signals/approval", json={"approved": "yes"})
    assert late.status_code == 409, late.text
    assert "CANCELLED" in late.json()["detail"]


def test_signals_to_unknown_runs_with_bad_bodies_or_names_are_refused_with_what_to_fix(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    missing = api.post("/run/no-such-run/signals/approval", json={"approved": "yes"})
    assert missing.status_code == 404, missing.text
    assert "no-such-run" in missing.json()["detail"]

    _approval_graph(api, namespace, "bodies")
    run_id = trigger(api, "bodies", store={"width": "1"})
    for body in ({"approved": True}, ["yes"], {"nested": {"a": "b"}}):
        refused = api.post(f"/run/{run_id}/signals/approval", json=body)
        assert refused.status_code == 422, (body, refused.text)
    bad_name = api.post(f"/run/{run_id}/signals/no spaces!", json={})
    assert bad_name.status_code == 422, bad_name.text
    accepted = api.post(f"/run/{run_id}/signals/approval", json={})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["woken"] == 0

    unknown = _cli(server, namespace, "signal", "send", "no-such-run", "approval", "approved=yes")
    assert unknown.returncode == 3
    assert "no-such-run" in unknown.stderr
    usage = _cli(server, namespace, "signal", "send", run_id, "approval", "approved")
    assert usage.returncode == 2
    assert "KEY=VALUE" in usage.stderr
