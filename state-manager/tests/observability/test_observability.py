"""What operators see: `/metrics` in Prometheus text format, JSON log lines carrying the request id,
no secret in any log line (DESIGN §6–7, PROTOCOL §1.5)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until
from prometheus_client.parser import text_string_to_metric_families

from ..blackbox.helpers import claim, claim_all, errored, executed, node, register, states, trigger, upsert

SECRET_VALUE = "sk-live-" + uuid.uuid4().hex  # unique: any occurrence in a log is a leak


@pytest.fixture(scope="module")
def logged_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    """A server logging at INFO, so per-request events are written to its log file."""
    return make_server(log_level="INFO")


@pytest.fixture
def logged_api(logged_server: ServerProcess, namespace: str) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=f"{logged_server.url}/v0/namespace/{namespace}",
        headers={"x-api-key": logged_server.api_key},
        timeout=30,
    ) as client:
        yield client


def samples(server: ServerProcess) -> list[tuple[str, dict[str, str], float]]:
    response = httpx.get(server.url + "/metrics", headers={"authorization": f"Bearer {server.api_key}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(server: ServerProcess, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels` (0 when there are none)."""
    return sum(v for n, got, v in samples(server) if n == name and labels.items() <= got.items())


@pytest.fixture
def worker_graph(api: httpx.Client, namespace: str) -> str:
    register(api, {"Work": ((), ("y",))})
    upsert(api, "work", [node("work", "Work", namespace)], retry_policy={"max_retries": 0})
    return "work"


def test_metrics_is_prometheus_text(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/metrics", headers={"x-api-key": server.api_key})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"exosphere_claims", "exosphere_completions", "exosphere_lease_expiries"} <= names, names


def test_ready_states_are_a_gauge_per_node(
    server: ServerProcess, api: httpx.Client, namespace: str, worker_graph: str
) -> None:
    for _ in range(3):
        trigger(api, worker_graph)
    assert value(server, "exosphere_ready_states", namespace=namespace, node="Work") == 3
    claim(api, "Work", batch_size=2)
    assert value(server, "exosphere_ready_states", namespace=namespace, node="Work") == 1


def test_claims_and_completions_are_counted(
    server: ServerProcess, api: httpx.Client, namespace: str, worker_graph: str
) -> None:
    trigger(api, worker_graph)
    trigger(api, worker_graph)
    first, second = claim_all(api, "Work", count=2)
    assert value(server, "exosphere_claims_total", namespace=namespace, node="Work") == 2
    assert executed(api, first, {"y": "ok"}).status_code == 200
    assert value(server, "exosphere_completions_total", namespace=namespace, node="Work", status="SUCCESS") == 1
    assert errored(api, second, "it broke").status_code == 200
    assert value(server, "exosphere_completions_total", namespace=namespace, node="Work", status="ERRORED") == 1
    assert value(server, "exosphere_state_errors_total", namespace=namespace, node="Work") == 1
    assert value(server, "exosphere_ready_states", namespace=namespace, node="Work") == 0
    # The queue wait of each claim is observed.
    assert value(server, "exosphere_queue_wait_seconds_count") >= 2


def expire_a_lease(api: httpx.Client, graph: str) -> dict[str, Any]:
    """Claim the root of a new run under a 1 s lease, let it lapse, and return the state as recorded after expiry."""
    run_id = trigger(api, graph)
    [state] = claim(api, "Work", batch_size=1, wait_ms=5000, lease_ms=1000)
    time.sleep(1.2)
    # A delayed run is a schedule change: it wakes the scheduler, which then also sees the lapsed lease
    # (it is not woken by the claim itself: see test_a_lapsed_lease_is_noticed_without_other_activity).
    trigger(api, graph, start_delay=3_600_000)
    found: list[dict[str, Any]] = []

    def expired() -> bool:
        found[:] = [s for s in states(api, run_id) if s["state_id"] == state["state_id"] and s["status"] != "QUEUED"]
        return bool(found)

    wait_until(expired, what="the lapsed lease to be expired")
    return found[0]


def test_lease_expiries_are_counted(server: ServerProcess, api: httpx.Client, worker_graph: str) -> None:
    before = value(server, "exosphere_lease_expiries_total")
    expired = expire_a_lease(api, worker_graph)
    assert expired["status"] == "ERRORED" and "Lease expired" in expired["error"], expired
    assert value(server, "exosphere_lease_expiries_total") >= before + 1


def test_a_lease_expiry_counts_as_a_state_error(
    server: ServerProcess, api: httpx.Client, namespace: str, worker_graph: str
) -> None:
    expire_a_lease(api, worker_graph)
    assert value(server, "exosphere_state_errors_total", namespace=namespace, node="Work") >= 1


def test_a_lapsed_lease_is_noticed_without_other_activity(api: httpx.Client, worker_graph: str) -> None:
    run_id = trigger(api, worker_graph)
    # A delayed run wakes the scheduler now; after that tick its next deadline is 30 s away (the safety net).
    trigger(api, worker_graph, start_delay=3_600_000)
    time.sleep(0.3)
    [state] = claim(api, "Work", batch_size=1, wait_ms=5000, lease_ms=1000)
    # Well before the scheduler's 30 s safety net: the lease's own deadline woke it.
    wait_until(lambda: states(api, run_id)[0]["status"] != "QUEUED", timeout_s=6, what=f"the lapsed lease of {state}")


# ---- logs --------------------------------------------------------------------------------------


def log_lines(server: ServerProcess) -> list[str]:
    assert server.log_path is not None
    return Path(server.log_path).read_text(errors="replace").splitlines()


def json_events(server: ServerProcess) -> list[dict[str, Any]]:
    events = []
    for line in log_lines(server):
        if line.startswith("{"):
            events.append(json.loads(line))  # a line that looks like JSON must be JSON
    return events


def wait_for_event(server: ServerProcess, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def check() -> bool:
        found[:] = [e for e in json_events(server) if match(e)]
        return bool(found)

    wait_until(check, what="the log event")
    return found[0]


def test_each_request_logs_one_event_with_its_request_id(
    logged_server: ServerProcess, logged_api: httpx.Client
) -> None:
    request_id = str(uuid.uuid4())
    response = logged_api.get("/graphs/", headers={"x-exosphere-request-id": request_id})
    assert response.status_code == 200
    assert response.headers["x-exosphere-request-id"] == request_id
    event = wait_for_event(logged_server, lambda e: e.get("request_id") == request_id)
    assert event["event"] == "http_request"
    assert event["method"] == "GET" and event["path"].endswith("/graphs/") and event["status"] == 200
    assert isinstance(event["duration_ms"], int | float) and event["duration_ms"] >= 0
    assert event["level"] == "info" and "timestamp" in event
    assert len([e for e in json_events(logged_server) if e.get("request_id") == request_id]) == 1


def test_error_answers_are_logged_with_their_status(logged_server: ServerProcess, logged_api: httpx.Client) -> None:
    request_id = str(uuid.uuid4())
    response = logged_api.post(
        "/state/nope/executed", json={"outputs": []}, headers={"x-exosphere-request-id": request_id}
    )
    assert response.status_code == 404
    assert response.headers["x-exosphere-request-id"] == request_id
    event = wait_for_event(logged_server, lambda e: e.get("request_id") == request_id)
    assert event["status"] == 404 and event["method"] == "POST"


def test_a_generated_request_id_is_echoed_and_logged(logged_server: ServerProcess, logged_api: httpx.Client) -> None:
    response = logged_api.get("/nodes/", headers={"x-exosphere-request-id": "not-a-uuid"})
    generated = response.headers["x-exosphere-request-id"]
    assert generated != "not-a-uuid" and uuid.UUID(generated)
    wait_for_event(logged_server, lambda e: e.get("request_id") == generated)


def test_request_events_are_json_lines(logged_server: ServerProcess, logged_api: httpx.Client) -> None:
    logged_api.get("/graphs/")
    events = [e for e in json_events(logged_server) if e.get("event") == "http_request"]
    assert events and all({"method", "path", "status", "duration_ms", "request_id"} <= e.keys() for e in events)


def test_every_log_line_is_json(logged_server: ServerProcess, logged_api: httpx.Client) -> None:
    logged_api.get("/graphs/")
    lines = [line for line in log_lines(logged_server) if line.strip()]
    assert lines
    not_json = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            not_json.append(line)
    assert not not_json, not_json[:5]


def test_a_secret_never_reaches_the_log(logged_server: ServerProcess, logged_api: httpx.Client, namespace: str) -> None:
    register(logged_api, {"Sec": ((), ("y",))}, secrets={"Sec": ["api_token"]})
    body = upsert(logged_api, "sec", [node("sec", "Sec", namespace)], secrets={"api_token": SECRET_VALUE})
    assert body["secrets"] == {"api_token": True}
    trigger(logged_api, "sec")
    [state] = claim_all(logged_api, "Sec", count=1)
    # The one place the value is handed out: the secrets endpoint, to a runtime holding the state.
    secrets = logged_api.get(f"/state/{state['state_id']}/secrets")
    assert secrets.json() == {"secrets": {"api_token": SECRET_VALUE}}
    # Failed requests carrying the value (bad bodies echo their input in a 422) do not log it either.
    logged_api.put("/graph/sec", json={"secrets": {"api_token": SECRET_VALUE}, "nodes": "oops"})
    logged_api.put("/graph/sec2", json={"secrets": {"api_token": SECRET_VALUE}, "nodes": [{"bad": 1}]})
    logged_api.get(f"/graphs/?token={SECRET_VALUE}")
    marker = str(uuid.uuid4())
    logged_api.get("/graphs/", headers={"x-exosphere-request-id": marker})
    wait_for_event(logged_server, lambda e: e.get("request_id") == marker)  # everything before is flushed
    text = "\n".join(log_lines(logged_server))
    assert SECRET_VALUE not in text
    assert logged_server.api_key not in text
