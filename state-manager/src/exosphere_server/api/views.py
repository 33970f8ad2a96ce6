"""How records look on the wire (PROTOCOL §4): timestamps, secrets as `true`, run summaries.

Each view builds the answer its route declares in `exospherehost.contract` (`GraphResponse`,
`StateResponse`, ...), key for key; `tests/blackbox/test_contract.py` holds every route's real
answers to its model. They stay plain dicts because answers of thousands of states are encoded in
pieces (`jsontext.py`) and pydantic would only add a second pass over them. Routes return them as a
`SafeJSONResponse` (or `json_answer`), so FastAPI neither passes them through the declared
`response_model` again nor renders them itself: the model documents the bytes, it does not make them.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from exospherehost.contract import GraphTrigger
from exospherehost.statuses import StateStatus

from exosphere_server.clock import now_ms
from exosphere_server.engine.run_counts import RunStateCounts, RunSummary
from exosphere_server.storage.records import GraphRecord, RegisteredNodeRecord, StateRecord


def iso(ms: int | None) -> str | None:
    """ISO-8601 without an offset, as the original serialises (the values are UTC)."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def doc_id(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:24]


def graph_view(graph: GraphRecord) -> dict[str, Any]:
    return {
        "name": graph.name,
        "namespace": graph.namespace,
        "version": graph.version,
        "nodes": graph.nodes,
        "secrets": {name: True for name in graph.secrets},
        "retry_policy": graph.retry_policy,
        "store_config": graph.store_config,
        # Triggers stored before `inputs`/`store` existed are answered with them, as the contract says.
        "triggers": [GraphTrigger.model_validate(t).model_dump(mode="json") for t in graph.triggers],
        "created_at": iso(graph.created_at),
        "updated_at": iso(graph.updated_at),
        "validation_status": graph.validation_status,
        "validation_errors": graph.validation_errors,
        "validation_warnings": graph.validation_warnings,
        "timeout_seconds": graph.timeout_seconds,
        "deadline_seconds": graph.deadline_seconds,
    }


def graph_list_item(graph: GraphRecord) -> dict[str, Any]:
    return {"_id": doc_id(graph.namespace, graph.name), **graph_view(graph)}


def registered_node_view(node: RegisteredNodeRecord) -> dict[str, Any]:
    return {
        "_id": doc_id(node.namespace, node.name),
        "created_at": iso(node.created_at),
        "updated_at": iso(node.updated_at),
        "name": node.name,
        "namespace": node.namespace,
        "runtime_name": node.runtime_name,
        "runtime_namespace": node.namespace,
        "inputs_schema": node.inputs_schema,
        "outputs_schema": node.outputs_schema,
        "secrets": node.secrets,
    }


def claimed_state_view(state: StateRecord, traceparent: str | None = None) -> dict[str, Any]:
    return {
        "state_id": state.id,
        "node_name": state.node_name,
        "identifier": state.identifier,
        "inputs": state.inputs,
        "created_at": iso(state.created_at),
        "lease_id": state.lease_id,
        "lease_expires_at": state.lease_expires_at,
        "traceparent": traceparent,
        "signal": state.signal,
    }


def state_view(state: StateRecord) -> dict[str, Any]:
    """Everything a person inspecting a state wants; never a secret (states hold none)."""
    return {
        "state_id": state.id,
        "id": state.id,
        "node_name": state.node_name,
        "identifier": state.identifier,
        "namespace": state.namespace,
        "graph_name": state.graph_name,
        "run_id": state.run_id,
        "status": state.status,
        "inputs": state.inputs,
        "outputs": state.outputs,
        "data": state.data,
        "error": state.error,
        "parents": state.parents,
        "retry_count": state.retry_count,
        "attempts": state.claims,
        "does_unites": state.does_unites,
        "enqueue_after": state.enqueue_after,
        "created_at": iso(state.created_at),
        "updated_at": iso(state.updated_at),
        "started_at": iso(state.started_at),
        "finished_at": iso(state.finished_at),
        "duration_ms": attempt_duration_ms(state),
        "runtime_name": state.runtime_name,
        "runtime_instance": state.runtime_instance,
        "traceback": state.traceback,
        "waiting_for": state.waiting_for if state.status == StateStatus.WAITING else None,
        "wait_timeout_at": state.wait_timeout_at if state.status == StateStatus.WAITING else None,
        "signal": state.signal,
        "usage": state.usage,
    }


def attempt_duration_ms(state: StateRecord) -> int | None:
    """How long the state's (latest) attempt ran: from its claim to its result."""
    if state.started_at is None or state.finished_at is None:
        return None
    return max(0, state.finished_at - state.started_at)


def run_progress_view(progress: RunStateCounts) -> dict[str, Any]:
    """`GET run/{run_id}/progress` and each run event: the run's summary, its version, and per node identifier
    (in the order the run first reached them) how many states are in each status. Small whatever the run's size."""
    summary = progress.summary
    nodes: dict[str, dict[str, Any]] = {}
    for c in progress.counts:
        entry = nodes.setdefault(c.identifier, {"identifier": c.identifier, "node_name": c.node_name, "counts": {}})
        entry["counts"][c.status] = c.count
    return {
        **run_view(summary),
        "namespace": summary.run.namespace,
        "finished": summary.finished,
        "version": progress.version,
        "nodes": list(nodes.values()),
    }


def run_view(summary: RunSummary) -> dict[str, Any]:
    counts = summary.counts
    return {
        "run_id": summary.run.run_id,
        "graph_name": summary.run.graph_name,
        "success_count": counts.success,
        "pending_count": counts.pending,
        "errored_count": counts.errored,
        "retried_count": counts.retried,
        "cancelled_count": counts.cancelled,
        "total_count": counts.total,
        "status": summary.status,
        "created_at": iso(summary.run.created_at),
        "started_at": iso(summary.run.created_at),
        "finished_at": iso(summary.finished_at),
        # A finished run whose end was not read (the progress and its events, built from the kept
        # counts) says nothing rather than a duration that grows with the clock.
        "duration_ms": None if summary.finished and summary.finished_at is None else summary.duration_ms(now_ms()),
    }
