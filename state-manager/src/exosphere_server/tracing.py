"""Traces of runs for OpenTelemetry: one trace per run, a span per state attempt (queue wait, then execute).

Off unless an OTLP endpoint is configured (`OTEL_EXPORTER_OTLP_ENDPOINT`, see `config.py`); then
`otel.py` (which imports the OpenTelemetry SDK, installed by `exosphere-server[otel]`) exports
spans. Off, nothing here imports OpenTelemetry and every hook is an empty method.

Ids are derived from the run and state ids, not drawn at random, so every replica, before and after
a restart, puts a run's spans in the same trace and under the same parents without storing them:

* the trace id and the run's root span (`run <graph>`, emitted at trigger) come from the run id;
* each attempt of a state (a claim: `state <identifier>`, with children `queue` and `execute`)
  gets ids from the state id and its claim number, so the `execute` span's id is known when the
  state is claimed: the claim hands it to the runtime as a W3C `traceparent`, and the node's own
  instrumented calls nest under it, although the span itself is emitted when the attempt ends.

Example::

    traceparent_of(state)   # '00-<trace id of the run>-<execute span id of this claim>-01'
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from exosphere_server.storage.records import RunRecord, StateRecord


def _derived(size: int, *parts: str) -> int:
    digest = hashlib.sha256("\x00".join(("exosphere", *parts)).encode()).digest()
    return int.from_bytes(digest[:size], "big") or 1  # zero is the invalid id in W3C trace context


def trace_id_of(run_id: str) -> int:
    return _derived(16, "trace", run_id)


def run_span_id(run_id: str) -> int:
    return _derived(8, "run", run_id)


def attempt_span_ids(state_id: str, claim: int) -> tuple[int, int, int]:
    """(attempt, queue, execute) span ids of a state's `claim`-th claim."""
    key = (state_id, str(claim))
    return _derived(8, "attempt", *key), _derived(8, "queue", *key), _derived(8, "execute", *key)


def traceparent_of(state: StateRecord) -> str:
    """The W3C traceparent of a claimed state's `execute` span (its `claims` already counts this claim)."""
    execute = attempt_span_ids(state.id, state.claims)[2]
    return f"00-{trace_id_of(state.run_id):032x}-{execute:016x}-01"


class Tracing:
    """Tracing switched off: every hook does nothing, and claims carry no traceparent."""

    enabled = False
    tracer_provider: Any = None  # an OpenTelemetry TracerProvider when on, for FastAPI's request spans

    def run_started(self, run: RunRecord, ended_ms: int) -> None:
        """A run was triggered (the trigger's work took from `run.created_at` to `ended_ms`)."""

    def attempts_ended(self, states: Sequence[StateRecord], ended_ms: int) -> None:
        """Claimed states left `QUEUED` (a result, an error, a signal, a hand-back or an expired lease)."""

    def traceparent(self, state: StateRecord) -> str | None:
        return None

    def shutdown(self) -> None:
        """Flush what is not exported yet (at server stop)."""


class IdTracing(Tracing):
    """Base of a tracing that is on: claims carry the traceparent of their execute span."""

    enabled = True

    def traceparent(self, state: StateRecord) -> str | None:
        return traceparent_of(state)


def open_tracing(enabled: bool) -> Tracing:
    """The OTLP exporting tracing when `enabled` (the SDK is imported only then), else the no-op one."""
    if not enabled:
        return Tracing()
    from exosphere_server.otel import OtlpTracing

    return OtlpTracing()
