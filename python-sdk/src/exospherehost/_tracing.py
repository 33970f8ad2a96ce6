"""A state's trace context while its node runs: the claim's W3C ``traceparent`` made the current span.

With ``opentelemetry-api`` installed (``exospherehost[otel]``) and a server that exports traces, the
spans a node's code opens itself, or through instrumented libraries (httpx, an LLM client), become
children of the state's ``execute`` span in the run's trace. Without the package, or without a
traceparent, this does nothing; the package is looked for once, at the first state.

Example::

    with state_trace_context(claim.traceparent):
        outcome = await run_node(node, inputs, secrets)
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_api: Any = None  # the `opentelemetry` package once found; False when it is not installed


def _opentelemetry() -> Any:
    global _api
    if _api is None:
        try:
            import opentelemetry.context
            import opentelemetry.trace

            _api = opentelemetry
        except ImportError:
            _api = False
    return _api


@contextlib.contextmanager
def state_trace_context(traceparent: str | None) -> Iterator[None]:
    match = _TRACEPARENT.match(traceparent or "")
    otel: Any = _opentelemetry() if match is not None else None
    if not otel or match is None:
        yield
        return
    trace_id, span_id, flags = (int(part, 16) for part in match.groups())
    remote = otel.trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=otel.trace.TraceFlags(flags))
    token = otel.context.attach(otel.trace.set_span_in_context(otel.trace.NonRecordingSpan(remote)))
    try:
        yield
    finally:
        otel.context.detach(token)
