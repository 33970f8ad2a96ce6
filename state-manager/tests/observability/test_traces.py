"""Traces (OpenTelemetry over OTLP): one trace per run, a span per state attempt with its queue wait and
its execution, the node's own spans nested under its state, the server's request spans; and no
traceparent at all when no endpoint is configured."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from exosphere_server.tracing import trace_id_of
from exosphere_testing import ServerProcess, wait_until
from exosphere_testing.otlp import OtlpReceiver, ReceivedSpan

from ..blackbox.helpers import claim_all, node, register, trigger, upsert

RUNTIME_APP = Path(__file__).parent / "traced_runtime_app.py"
FAN = "abcd"  # Split makes one Work per character


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as started:
        yield started


def otel_env(receiver: OtlpReceiver, service: str) -> dict[str, str]:
    # Exported within 50 ms of ending: the test waits for spans to arrive, never for a time.
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_SERVICE_NAME": service, "OTEL_BSP_SCHEDULE_DELAY": "50"}


@pytest.fixture(scope="module")
def traced_server(make_server: Callable[..., ServerProcess], receiver: OtlpReceiver) -> ServerProcess:
    return make_server(env=otel_env(receiver, "exosphere-server"))


@pytest.fixture
def traced_runtime(
    traced_server: ServerProcess, receiver: OtlpReceiver, namespace: str, tmp_path: Path
) -> Iterator[None]:
    env = {
        **os.environ,
        **otel_env(receiver, "traced-runtime"),
        "EXOSPHERE_STATE_MANAGER_URI": traced_server.url,
        "EXOSPHERE_API_KEY": traced_server.api_key,
        "EXOSPHERE_NAMESPACE": namespace,
    }
    log_path = tmp_path / "runtime.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, str(RUNTIME_APP)], env=env, stdout=log, stderr=log)
    try:
        nodes = f"{traced_server.url}/v0/namespace/{namespace}/nodes/"
        headers = {"x-api-key": traced_server.api_key}
        wait_until(lambda: httpx.get(nodes, headers=headers).json()["count"] == 4, what="the runtime to register")
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


def fan_graph(namespace: str) -> list[dict[str, object]]:
    """plan → split (one output per character: the fan-out) → work → merge, which unites plan (runs once)."""
    return [
        node("plan", "Plan", namespace, {"text": "${{ store.text }}"}, ["split"]),
        node("split", "Split", namespace, {"text": "${{ plan.outputs.text }}"}, ["work"]),
        node("work", "Work", namespace, {"item": "${{ split.outputs.item }}"}, ["merge"]),
        node("merge", "Merge", namespace, {"text": "${{ plan.outputs.text }}"}, unites="plan"),
    ]


def test_a_fan_out_run_is_one_trace_with_a_span_per_attempt_and_the_nodes_spans_under_theirs(
    traced_server: ServerProcess, receiver: OtlpReceiver, namespace: str, traced_runtime: None
) -> None:
    with httpx.Client(
        base_url=f"{traced_server.url}/v0/namespace/{namespace}", headers={"x-api-key": traced_server.api_key}
    ) as api:
        upsert(api, "fan", fan_graph(namespace), store_config={"required_keys": ["text"]})
        run_id = trigger(api, "fan", store={"text": FAN})

        def run_spans() -> list[ReceivedSpan]:
            return [s for s in receiver.spans() if s.attributes.get("exosphere.run_id") == run_id]

        def complete() -> bool:
            attempts = Counter(s.attributes["exosphere.node"] for s in run_spans() if s.name.startswith("state "))
            models = [s for s in receiver.spans() if s.name == "model-call"]
            # Split is claimed once: its fan-out siblings are created already executed, never claimed.
            expected = {"Plan": 1, "Split": 1, "Work": len(FAN), "Merge": 1}
            known = {s.span_id for s in receiver.spans()}
            linked = all(link in known for s in run_spans() for link in s.links)  # the requests' spans too
            return attempts == expected and len(models) >= len(FAN) and linked

        wait_until(complete, what="every span of the run to reach the collector")

    spans = run_spans()
    [root] = [s for s in spans if s.name == "run fan"]
    assert root.parent_id is None and root.service == "exosphere-server"
    assert {s.trace_id for s in spans} == {root.trace_id}  # one trace per run

    everything = receiver.spans()
    children = {s.span_id: [c for c in everything if c.parent_id == s.span_id] for s in everything}
    attempts = [s for s in spans if s.name.startswith("state ")]
    for attempt in attempts:
        assert attempt.parent_id == root.span_id
        parts = {c.name: c for c in children[attempt.span_id]}
        assert set(parts) == {"queue", "execute"}, attempt
        queue, execute = parts["queue"], parts["execute"]
        assert (
            attempt.start_ns == queue.start_ns <= queue.end_ns <= execute.start_ns <= execute.end_ns == attempt.end_ns
        )
        assert not attempt.error and attempt.attributes["exosphere.status"] in ("SUCCESS", "EXECUTED")

    models = [s for s in everything if s.name == "model-call" and s.trace_id == root.trace_id]
    assert sorted(m.attributes["item"] for m in models) == sorted(FAN)
    executes = {c.span_id: a for a in attempts for c in children[a.span_id] if c.name == "execute"}
    for model in models:
        assert model.service == "traced-runtime"
        assert executes[model.parent_id or ""].attributes["exosphere.node"] == "Work"  # under its own state
    assert len({m.parent_id for m in models}) == len(FAN)

    # The server's own work: request spans, by route; the run and each execution link to the request
    # that made them (the trigger; the result that ended the attempt).
    by_id = {s.span_id: s for s in everything}

    def request_of(span_id: str) -> str:
        """The route of the HTTP request span at or above `span_id` (FastAPI's endpoint step is inside it)."""
        span = by_id[span_id]
        while not span.attributes.get("http.route"):
            span = by_id[span.parent_id or ""]
        return span.name

    routes = {s.name for s in everything if s.service == "exosphere-server" and s.attributes.get("http.route")}
    assert any("/states/enqueue" in name for name in routes) and any("/trigger" in name for name in routes), routes
    assert [request_of(link) for link in root.links] == [
        "POST /v0/namespace/{namespace_name}/graph/{graph_name}/trigger"
    ]
    for execute in executes:
        links = by_id[execute].links
        assert [request_of(link) for link in links] == ["POST /v0/namespace/{namespace_name}/states/executed"]


def test_claims_carry_a_traceparent_only_when_traces_are_exported(
    traced_server: ServerProcess, make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    for server, traced in ((traced_server, True), (make_server(), False)):
        with httpx.Client(
            base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}
        ) as api:
            register(api, {"Only": (("a",), ("b",))})
            upsert(api, "one", [node("only", "Only", namespace, {"a": "x"})])
            run_id = trigger(api, "one")
            [claimed] = claim_all(api, "Only", count=1)
        if traced:
            version, trace_id, span_id, flags = claimed["traceparent"].split("-")
            assert (version, flags, len(trace_id), len(span_id)) == ("00", "01", 32, 16)
            assert trace_id == f"{trace_id_of(run_id):032x}"  # the run's trace, on any replica
        else:
            assert claimed["traceparent"] is None
