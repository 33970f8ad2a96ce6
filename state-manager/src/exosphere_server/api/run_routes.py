"""Starting runs and reading them (PROTOCOL §4.5, §4.16–4.18) plus the additive run endpoints."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from exospherehost import contract
from exospherehost.contract import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    CancelRunResponse,
    ListRunsResponse,
    NodeDetailsResponse,
    RunGraphResponse,
    RunResponse,
    RunStatesResponse,
    RunStatus,
    TriggerManyResponse,
    TriggerResponse,
)
from exospherehost.statuses import StateStatus
from fastapi import APIRouter, Body, Header, Path, Query, Request
from starlette.responses import Response

from exosphere_server.api.access import AUDIT_SCOPE_KEY, PendingAudit
from exosphere_server.api.deps import engine_context
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.run_stream import (
    KEEP_ALIVE,
    KEEP_ALIVE_S,
    RETRY,
    RunStreamResponse,
    follow_for_stream,
    sse_event,
)
from exosphere_server.api.schemas import MAX_WAIT_MS, CancelRunRequest, TriggerManyRequest, TriggerRequest
from exosphere_server.api.views import run_progress_view, run_view, state_view
from exosphere_server.engine import cancellation, runs, serving
from exosphere_server.engine.audit import AuditNote
from exosphere_server.engine.errors import BadRequest
from exosphere_server.engine.run_counts import RunStateCounts
from exosphere_server.engine.run_feed import RunFollower

router = APIRouter()
# A run's states come a page at a time: a fan-out of 10,000 was one 10 MB answer.
STATES_PAGE_SIZE = 1000
MAX_STATES_PAGE_SIZE = 5000


@router.post("/namespace/{namespace_name}/graph/{graph_name}/trigger", response_model=TriggerResponse)
async def trigger(
    namespace_name: str,
    graph_name: str,
    body: TriggerRequest,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY_LENGTH,
            description="Additive: the body's idempotency_key, as a header (both given: they must be equal)",
        ),
    ] = None,
) -> Response:
    if idempotency_key is not None and body.idempotency_key not in (None, idempotency_key):
        raise BadRequest(
            "The Idempotency-Key header and the body's idempotency_key differ: send one of them, or the same value"
        )
    key = body.idempotency_key or idempotency_key
    context = engine_context(request)
    started = await runs.trigger(
        context, namespace_name, graph_name.strip(), _run_request(body, key), _audit_in_transaction(request)
    )
    return SafeJSONResponse(_started_view(started))


@router.post("/namespace/{namespace_name}/graph/{graph_name}/trigger-many", response_model=TriggerManyResponse)
async def trigger_many(namespace_name: str, graph_name: str, body: TriggerManyRequest, request: Request) -> Response:
    """Start many runs of one graph in one request and one transaction (all or none), each with its own
    inputs, store, delay and idempotency key; the answers come in the request's order."""
    requests = [_run_request(item, item.idempotency_key) for item in body.runs]
    started = await runs.trigger_many(
        engine_context(request), namespace_name, graph_name.strip(), requests, _audit_in_transaction(request)
    )
    return SafeJSONResponse({"runs": [_started_view(s) for s in started]})


def _audit_in_transaction(request: Request) -> AuditNote | None:
    """The call's audit log entry, taken from the audit trail (`audit_trail.py`) to be written in the
    trigger's own transaction: one commit per trigger instead of two, and no entry without its run."""
    pending: PendingAudit | None = request.scope.pop(AUDIT_SCOPE_KEY, None)
    if pending is None:
        return None
    return AuditNote(pending.principal, pending.action, pending.namespace, pending.target)


def _run_request(body: TriggerRequest | contract.TriggerRequest, key: str | None) -> runs.RunRequest:
    return runs.RunRequest(
        inputs=body.inputs,
        store=body.store,
        start_delay_ms=body.start_delay,
        idempotency_key=key,
        deadline_seconds=body.deadline_seconds,
        priority=body.priority,
        budget=None if body.budget is None else body.budget.model_dump(exclude_none=True),
    )


def _started_view(started: runs.StartedRun) -> dict[str, object]:
    return {"status": StateStatus.CREATED, "run_id": started.run_id, "duplicate": started.duplicate}


@router.get("/namespace/{namespace_name}/runs/{page}/{size}", response_model=ListRunsResponse)
async def list_runs(
    namespace_name: str,
    request: Request,
    page: int = Path(ge=1, le=1_000_000),
    size: int = Path(ge=1, le=1000),
    graph_name: str | None = Query(default=None, description="Only runs of this graph"),
    status: RunStatus | None = Query(default=None, description="Only runs with this status (additive)"),
) -> Response:
    total, summaries = await runs.list_runs(
        engine_context(request), namespace_name, page, size, graph_name, status=status
    )
    listed = [run_view(s) for s in summaries]
    return SafeJSONResponse({"namespace": namespace_name, "total": total, "page": page, "size": size, "runs": listed})


@router.get("/namespace/{namespace_name}/run/{run_id}", response_model=RunResponse)
async def get_run(
    namespace_name: str, run_id: str, request: Request, wait_ms: int = Query(default=0, ge=0, le=MAX_WAIT_MS)
) -> Response:
    ctx = engine_context(request)
    summary = await runs.run_summary(ctx, namespace_name, run_id, wait_ms)
    cancel = await runs.run_cancellation(ctx, run_id) if summary.counts.cancelled else None
    warnings = await serving.unserved_warnings(ctx, run_id) if summary.counts.pending else []
    children = await runs.child_runs(ctx, run_id)
    return SafeJSONResponse(
        {
            **run_view(summary),
            "namespace": summary.run.namespace,
            "finished": summary.finished,
            "cancel_reason": cancel.reason if cancel else None,
            "warnings": warnings,
            "child_runs": [run_view(child) for child in children],
        }
    )


@router.post("/namespace/{namespace_name}/run/{run_id}/cancel", response_model=CancelRunResponse)
async def cancel_run(
    namespace_name: str,
    run_id: str,
    request: Request,
    body: Annotated[CancelRunRequest | None, Body()] = None,
) -> Response:
    """Cancel a run (additive, docs/wire-extensions.md "Cancel"): every state of it that has not ended
    becomes CANCELLED in one transaction; executing nodes learn it from their next heartbeat (409) and
    any result sent for them is refused. Cancelling again answers the same; a finished run is a `409`
    that names its status; an unknown run is a `404`."""
    reason = body.reason if body is not None else None
    record = await cancellation.cancel_run(engine_context(request), namespace_name, run_id, reason)
    return SafeJSONResponse(
        {
            "run_id": run_id,
            "status": RunStatus.CANCELLED,
            "cancelled_states": record.cancelled_states,
            "reason": record.reason,
        }
    )


@router.get(
    "/namespace/{namespace_name}/run/{run_id}/events",
    response_class=RunStreamResponse,
    status_code=200,
    response_description="Server-sent events: `snapshot`, then `change`s, then `finished` (docs/wire-extensions.md)",
)
async def run_events(
    namespace_name: str,
    run_id: str,
    request: Request,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            pattern=r"^[0-9]{0,18}$",
            description="The id of the last event received: resume after it (sent by EventSource on reconnect)",
        ),
    ] = None,
) -> RunStreamResponse:
    """Server-sent events of the run's progress (docs/wire-extensions.md, "Run events").

    The first event is a `snapshot` of the run's counts per node and status, then a `change` each time
    they change, and a `finished` event when the run ends, after which the stream closes. Every event
    carries the whole progress (the payload of `GET run/{run_id}/progress`) and the run's version as
    its id; with `Last-Event-ID`, only a snapshot newer than that id is sent (a finished run always
    sends its `finished` event). `404` for a run not in the namespace.
    """
    after = int(last_event_id) if last_event_id else -1
    follower, resources = await follow_for_stream(request, namespace_name, run_id)
    return RunStreamResponse(_run_events(follower, after), resources)


def _event_data(progress: RunStateCounts) -> str:
    return json.dumps(run_progress_view(progress), separators=(",", ":"))


async def _run_events(follower: RunFollower, after: int) -> AsyncIterator[str]:
    """Snapshots newer than `after` (the client's Last-Event-ID), each as it comes; a finished run's last
    snapshot always, whatever `after` says, so that the stream ends."""
    yield RETRY
    kind = "snapshot"
    latest = follower.latest
    while True:
        finished = latest.summary.finished
        if latest.version > after or finished:
            yield sse_event("finished" if finished else kind, latest.encoded("v0", _event_data), latest.version)
            if finished:
                return
            kind, after = "change", latest.version
        newer = await follower.next(latest.version, KEEP_ALIVE_S)
        if newer is not None:
            latest = newer
        elif follower.gone:
            yield sse_event("gone", json.dumps({"run_id": latest.run.run_id}))
            return
        elif follower.closing:
            return  # the server is stopping: the client reconnects with Last-Event-ID
        else:
            yield KEEP_ALIVE


@router.get("/namespace/{namespace_name}/run/{run_id}/states", response_model=RunStatesResponse)
async def get_run_states(
    namespace_name: str,
    run_id: str,
    request: Request,
    page: int = Query(default=1, ge=1, le=1_000_000, description="Page number, from 1 (additive)"),
    size: int = Query(default=STATES_PAGE_SIZE, ge=1, le=MAX_STATES_PAGE_SIZE, description="States per page"),
) -> Response:
    """A page of a run's states, oldest first; `total` says how many there are in all."""
    total, states = await runs.run_states_page(engine_context(request), namespace_name, run_id, page, size)
    return SafeJSONResponse(
        {
            "run_id": run_id,
            "count": len(states),
            "total": total,
            "page": page,
            "size": size,
            "states": [state_view(s) for s in states],
        }
    )


@router.get("/namespace/{namespace_name}/states/run/{run_id}/graph", response_model=RunGraphResponse)
async def run_graph(namespace_name: str, run_id: str, request: Request) -> Response:
    run, states = await runs.run_states(engine_context(request), namespace_name, run_id)
    ids = {s.id for s in states}
    nodes = [
        {"id": s.id, "node_name": s.node_name, "identifier": s.identifier, "status": s.status, "error": s.error}
        for s in states
    ]
    edges = [
        {"source": list(s.parents.values())[-1], "target": s.id}
        for s in states
        if s.parents and list(s.parents.values())[-1] in ids
    ]
    summary: dict[str, int] = {status: 0 for status in StateStatus}  # every status, in the enum's order (§4.17)
    for s in states:
        summary[s.status] = summary.get(s.status, 0) + 1
    return SafeJSONResponse(
        {
            "graph_name": run.graph_name if run else "",
            "root_states": [n for n, s in zip(nodes, states, strict=True) if not s.parents],
            "nodes": nodes,
            "edges": edges,
            "node_count": len(nodes),
            "edge_count": len(edges),
            "execution_summary": summary,
        }
    )


@router.get(
    "/namespace/{namespace_name}/graph/{graph_name}/run/{run_id}/node/{node_id}", response_model=NodeDetailsResponse
)
async def node_details(namespace_name: str, graph_name: str, run_id: str, node_id: str, request: Request) -> Response:
    state = await runs.state_in_run(engine_context(request), namespace_name, graph_name, run_id, node_id)
    view = state_view(state)
    # The contract's fields, in its order: the model is the list of keys.
    return SafeJSONResponse({key: view[key] for key in NodeDetailsResponse.model_fields})
