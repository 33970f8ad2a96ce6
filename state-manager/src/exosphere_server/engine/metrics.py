"""Prometheus metrics of the engine; the ready-queue depth is read from storage at scrape time."""

from __future__ import annotations

from collections import Counter as TallyCounter
from collections.abc import Iterable

from exospherehost.statuses import AFTER_ERRORED, StateStatus
from prometheus_client import Counter, Histogram

from exosphere_server.clock import now_ms
from exosphere_server.engine.context import EngineContext
from exosphere_server.storage.records import StateRecord

CLAIMS = Counter("exosphere_claims_total", "States handed to runtimes", ["namespace", "node"])
EAGER_CLAIMS = Counter(
    "exosphere_eager_claims_total",
    "States handed to runtimes in the answer to their results (eager dispatch), also counted in claims_total",
    ["namespace", "node"],
)
COMPLETIONS = Counter("exosphere_completions_total", "States that reached a result", ["namespace", "node", "status"])
ERRORS = Counter("exosphere_state_errors_total", "Failed attempts (errored or lease expired)", ["namespace", "node"])
LEASE_EXPIRIES = Counter("exosphere_lease_expiries_total", "Claims whose lease ran out without a result")
# What attempts reported using, per namespace, graph and node (counters: rate() gives tokens per second).
_USAGE_LABELS = ["namespace", "graph", "node"]
USAGE = {
    "input_tokens": Counter("exosphere_usage_input_tokens_total", "Input tokens attempts reported", _USAGE_LABELS),
    "output_tokens": Counter("exosphere_usage_output_tokens_total", "Output tokens attempts reported", _USAGE_LABELS),
    "requests": Counter("exosphere_usage_requests_total", "Provider requests attempts reported", _USAGE_LABELS),
    "cost_usd": Counter("exosphere_usage_cost_usd_total", "Cost in US dollars attempts reported", _USAGE_LABELS),
}
QUEUE_WAIT = Histogram(
    "exosphere_queue_wait_seconds",
    "Time a state was ready before a runtime claimed it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def record_claims(states: Iterable[StateRecord], *, eager: bool = False) -> None:
    now = now_ms()
    by_node: TallyCounter[tuple[str, str]] = TallyCounter()  # one increment per node, not per state
    for state in states:
        by_node[(state.namespace, state.node_name)] += 1
        QUEUE_WAIT.observe(max(0, now - state.enqueue_after) / 1000)
    for labels, count in by_node.items():
        CLAIMS.labels(*labels).inc(count)
        if eager:
            EAGER_CLAIMS.labels(*labels).inc(count)


def record_completion(state: StateRecord, status: str) -> None:
    """Count a state that reached `status` through a runtime's report or an expired lease."""
    record_completions([(state, status)])


def record_completions(done: Iterable[tuple[StateRecord, str]]) -> None:
    """`record_completion` for many states (a batch of results): one increment per node and status."""
    by_node: TallyCounter[tuple[str, str, str]] = TallyCounter()
    for state, status in done:
        by_node[(state.namespace, state.node_name, status)] += 1
        _record_failure_and_usage(state, status)
    for labels, count in by_node.items():
        COMPLETIONS.labels(*labels).inc(count)


def _record_failure_and_usage(state: StateRecord, status: str) -> None:
    if status in AFTER_ERRORED:
        ERRORS.labels(state.namespace, state.node_name).inc()
    for name, value in (state.usage or {}).items():
        if value and name in USAGE:
            USAGE[name].labels(state.namespace, state.graph_name, state.node_name).inc(value)


def record_cancelled(states: Iterable[StateRecord]) -> None:
    """Count states a cancel ended (a run's deadline or budget, or by hand)."""
    for state in states:
        record_completion(state, StateStatus.CANCELLED)


async def ready_queue_depths(ctx: EngineContext) -> dict[tuple[str, str], int]:
    """How many states wait for a runtime now, per (namespace, node): read at scrape time."""
    async with ctx.storage.reader() as tx:
        return await tx.ready_depths(now_ms())
