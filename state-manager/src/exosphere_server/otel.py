"""The OpenTelemetry SDK side of `tracing.py`: spans with chosen ids, exported over OTLP (http/protobuf).

Imported only when an OTLP endpoint is configured. The exporter reads the standard variables itself
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `..._HEADERS`, `..._TIMEOUT`, `OTEL_BSP_*`), and the resource
`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` (service name `exosphere-server` by default).

Spans of runs and attempts are written after the fact, with their real start and end times, and with
the ids `tracing.py` derives: the SDK draws ids from its id generator, so this one hands out the
chosen ids while such a span is started, and random ones otherwise (the server's request spans).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from exosphere_server import __version__
from exosphere_server.storage.records import RunRecord, StateRecord
from exosphere_server.tracing import IdTracing, attempt_span_ids, run_span_id, trace_id_of

_CHOSEN: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("exosphere_chosen_ids", default=None)
FAILED_STATUSES = {"ERRORED", "NEXT_CREATED_ERROR"}


class ChosenIds(IdGenerator):
    """Random ids, except while `_CHOSEN` holds the (trace id, span id) of a span being written."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_trace_id(self) -> int:
        chosen = _CHOSEN.get()
        return chosen[0] if chosen else self._random.generate_trace_id()

    def generate_span_id(self) -> int:
        chosen = _CHOSEN.get()
        return chosen[1] if chosen else self._random.generate_span_id()


def _ns(ms: int) -> int:
    return ms * 1_000_000


def _request() -> list[Link]:
    """A link to the request whose work this is (the trigger, the result that ended an attempt): the
    hooks run right after its commit, inside FastAPI's request span. None for the scheduler's work."""
    current = trace.get_current_span().get_span_context()
    return [Link(current)] if current.is_valid else []


def _parent(trace_id: int, span_id: int) -> Context:
    span_context = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(span_context))


class OtlpTracing(IdTracing):
    def __init__(self) -> None:
        service = os.environ.get("OTEL_SERVICE_NAME") or "exosphere-server"
        resource = Resource.create({SERVICE_NAME: service, "service.version": __version__})
        self.provider = TracerProvider(resource=resource, id_generator=ChosenIds())
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("exosphere_server", __version__)
        self.tracer_provider = self.provider

    def _write(
        self,
        name: str,
        ids: tuple[int, int],
        parent: Context | None,
        start_ms: int,
        end_ms: int,
        attributes: dict[str, str | int],
        failed: str | None = None,
        links: Sequence[Link] = (),
    ) -> None:
        token = _CHOSEN.set(ids)
        try:
            span = self.tracer.start_span(
                name,
                context=parent or Context(),
                kind=SpanKind.INTERNAL,
                start_time=_ns(start_ms),
                attributes=attributes,
                links=links,
            )
        finally:
            _CHOSEN.reset(token)
        if failed is not None:
            span.set_status(Status(StatusCode.ERROR, failed))
        span.end(end_time=_ns(max(end_ms, start_ms)))

    def run_started(self, run: RunRecord, ended_ms: int) -> None:
        attributes: dict[str, str | int] = {
            "exosphere.namespace": run.namespace,
            "exosphere.graph": run.graph_name,
            "exosphere.graph_version": run.graph_version,
            "exosphere.run_id": run.run_id,
        }
        ids = (trace_id_of(run.run_id), run_span_id(run.run_id))
        self._write(f"run {run.graph_name}", ids, None, run.created_at, ended_ms, attributes, links=_request())

    def attempts_ended(self, states: Sequence[StateRecord], ended_ms: int) -> None:
        links = _request()
        for state in states:
            self._attempt(state, state.finished_at or ended_ms, links)

    def _attempt(self, state: StateRecord, ended: int, links: Sequence[Link]) -> None:
        trace_id = trace_id_of(state.run_id)
        attempt, queue, execute = attempt_span_ids(state.id, state.claims)
        started = state.started_at if state.started_at is not None else ended
        # Waiting starts when the state could first be claimed: created, or its delay over.
        queued_from = min(max(state.created_at, state.enqueue_after), started)
        failed = state.error or state.status if state.status in FAILED_STATUSES else None
        attributes: dict[str, str | int] = {
            "exosphere.namespace": state.namespace,
            "exosphere.graph": state.graph_name,
            "exosphere.run_id": state.run_id,
            "exosphere.state_id": state.id,
            "exosphere.node": state.node_name,
            "exosphere.identifier": state.identifier,
            "exosphere.claim": state.claims,
            "exosphere.retry_count": state.retry_count,
            "exosphere.status": state.status,
        }
        run_parent = _parent(trace_id, run_span_id(state.run_id))
        self._write(
            f"state {state.identifier}", (trace_id, attempt), run_parent, queued_from, ended, attributes, failed
        )
        attempt_parent = _parent(trace_id, attempt)
        self._write("queue", (trace_id, queue), attempt_parent, queued_from, started, {"exosphere.state_id": state.id})
        self._write("execute", (trace_id, execute), attempt_parent, started, ended, attributes, failed, links)

    def shutdown(self) -> None:
        self.provider.shutdown()
