"""The dashboard's JSON and server-sent-event endpoints under `/dashboard/api`, behind the session cookie.

The live run graph reads `GET .../runs/{run_id}/progress` (per template node: counts by status, one
GROUP BY in the database) and follows `.../runs/{run_id}/events`, which sends the same payload each
time it changes: it follows the run's change feed, shared with every other follower of the run on
this replica (`api/run_stream.py`). Individual states are listed a page at a time, only when a node
is opened.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from exospherehost.contract import SIGNAL_NAME_PATTERN
from exospherehost.statuses import PHASE
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from exosphere_server.api import stream_routes
from exosphere_server.api.auth import reject_nul_characters
from exosphere_server.api.deps import engine_context
from exosphere_server.api.run_stream import (
    KEEP_ALIVE,
    KEEP_ALIVE_S,
    RETRY,
    RunStreamResponse,
    follow_for_stream,
    sse_event,
)
from exosphere_server.clock import now_ms
from exosphere_server.dashboard import data, session
from exosphere_server.dashboard.rendering import when
from exosphere_server.engine import cancellation, inspection, signal_waits, transitions
from exosphere_server.engine.run_counts import RunStateCounts
from exosphere_server.engine.run_feed import RunFollower
from exosphere_server.engine.storable import unstorable_at
from exosphere_server.storage.records import StateRecord

router = APIRouter(prefix="/api", dependencies=[Depends(session.require_api_session), Depends(reject_nul_characters)])
RUN = "/ns/{namespace}/runs/{run_id}"


def _progress_data(progress: RunStateCounts) -> str:
    return json.dumps(data.RunProgress.of(progress).view(), sort_keys=True)


async def _progress_events(follower: RunFollower) -> AsyncIterator[str]:
    """The run's progress now, then each time it changes (on any replica); ends when the server stops.
    A finished run is followed on: a manual retry from the page brings it back to life."""
    yield RETRY
    latest = follower.latest
    yield sse_event("progress", latest.encoded("dashboard", _progress_data))
    while True:
        newer = await follower.next(latest.version, KEEP_ALIVE_S)
        if newer is None:
            if follower.gone:
                yield sse_event("gone", "{}")
                return
            if follower.closing:
                return
            yield KEEP_ALIVE
            continue
        latest = newer
        yield sse_event("progress", latest.encoded("dashboard", _progress_data))


def state_row(namespace: str, state: StateRecord) -> dict[str, Any]:
    """A state in a list: enough to pick one; the state page has the rest."""
    return {
        "id": state.id,
        "identifier": state.identifier,
        "node_name": state.node_name,
        "status": state.status,
        "phase": PHASE[state.status],
        "retry_count": state.retry_count,
        "attempts": state.claims,
        "created_at": when(state.created_at),
        "updated_at": when(state.updated_at),
        "error": (state.error or "")[:200] or None,
        "url": f"/dashboard/ns/{namespace}/states/{state.id}",
    }


@router.get(RUN + "/progress")
async def run_progress(namespace: str, run_id: str, request: Request) -> dict[str, Any]:
    return (await data.run_progress(engine_context(request), namespace, run_id)).view()


@router.get(RUN + "/events")
async def run_events(namespace: str, run_id: str, request: Request) -> RunStreamResponse:
    """Server-sent events: `progress` whenever the run's counts change, a comment now and then to keep alive.

    Each client address may hold a bounded number of run streams, these and `/v0` run events together
    (`EXOSPHERE_MAX_LIVE_VIEWS_PER_CLIENT`). A stream runs no query of its own: it follows the run's
    change feed.
    """
    follower, resources = await follow_for_stream(request, namespace, run_id)  # a 404 now, not inside the stream
    return RunStreamResponse(_progress_events(follower), resources)


@router.get(RUN + "/timeline")
async def run_timeline(namespace: str, run_id: str, request: Request) -> dict[str, Any]:
    """One bar per attempt (claim to result), for the run page's timeline; the earliest claimed first."""
    run, total, attempts = await inspection.run_attempts(
        engine_context(request), namespace, run_id, data.TIMELINE_LIMIT
    )
    return data.timeline_view(namespace, run, total, attempts, now_ms())


@router.get(RUN + "/nodes/{identifier}/states")
async def node_states(
    namespace: str,
    run_id: str,
    identifier: str,
    request: Request,
    status: list[str] = Query(default_factory=list),
    page: int = Query(default=1, ge=1, le=1_000_000),
    size: int = Query(default=50, ge=1, le=500),
) -> dict[str, Any]:
    """One page of a node's states in the run, oldest first."""
    wanted = [s for s in status if s]
    ctx = engine_context(request)
    total, states = await inspection.node_states_page(ctx, namespace, run_id, identifier, wanted, page, size)
    return {
        "identifier": identifier,
        "total": total,
        "page": page,
        "size": size,
        "pages": max(1, -(-total // size)),
        "states": [state_row(namespace, s) for s in states],
    }


@router.get("/ns/{namespace}/states/{state_id}/stream")
async def state_stream(
    namespace: str,
    state_id: str,
    request: Request,
    attempt: int | None = Query(default=None, ge=1, le=stream_routes.MAX_OFFSET),
    from_offset: int = Query(default=0, ge=0, le=stream_routes.MAX_OFFSET, alias="from"),
) -> RunStreamResponse:
    """The state's live stream (its latest attempt's, or `attempt`'s), as `/v0`'s: `chunk` events, then `end`."""
    last_event_id = request.headers.get("last-event-id", "")
    if last_event_id.isdigit() and len(last_event_id) <= 10:
        from_offset = int(last_event_id) + 1
    return await stream_routes.open_state_stream(request, namespace, state_id, attempt, from_offset)


@router.get("/ns/{namespace}/states/{state_id}/attempts")
async def attempts(namespace: str, state_id: str, request: Request) -> dict[str, Any]:
    """The states at the same place in the run as this one: its retries, manual retries and fan-out siblings."""
    detail = await data.state_detail(engine_context(request), namespace, state_id)
    return {
        "state": state_row(namespace, detail.state),
        "attempts": [state_row(namespace, s) for s in detail.same_position],
    }


class RetryRequest(BaseModel):
    fanout_id: str = Field(min_length=8, max_length=64, description="Chosen by the page: a repeated click is harmless")


@router.post("/ns/{namespace}/states/{state_id}/retry")
async def retry(namespace: str, state_id: str, body: RetryRequest, request: Request) -> dict[str, Any]:
    """Manual retry of an errored state (the same as `POST /v0/.../manual-retry`): a fresh attempt."""
    ctx = engine_context(request)
    detail = await data.state_detail(ctx, namespace, state_id)
    created = await transitions.manual_retry(ctx, detail.state.namespace, state_id, body.fanout_id)
    return {
        "id": created.id,
        "status": created.status,
        "url": f"/dashboard/ns/{namespace}/states/{created.id}",
    }


class CancelRequest(BaseModel):
    reason: str | None = Field(default=None, max_length=2000, description="Why, shown on the run's page")


@router.post(RUN + "/cancel")
async def cancel(namespace: str, run_id: str, body: CancelRequest, request: Request) -> dict[str, Any]:
    """Cancel a run (the same as `POST /v0/.../run/{run_id}/cancel`), after the page's confirmation."""
    record = await cancellation.cancel_run(engine_context(request), namespace, run_id, body.reason)
    return {
        "run_id": run_id,
        "status": "CANCELLED",
        "cancelled_states": record.cancelled_states,
        "reason": record.reason,
    }


class SignalRequest(BaseModel):
    payload: dict[str, str] = Field(description="The signal's payload: names to text values")


@router.post(RUN + "/signals/{name}")
async def send_signal(namespace: str, run_id: str, name: str, body: SignalRequest, request: Request) -> dict[str, Any]:
    """Send a signal to a run (the same as `POST /v0/.../run/{run_id}/signals/{name}`), from a waiting state's page."""
    if re.fullmatch(SIGNAL_NAME_PATTERN, name) is None:
        raise HTTPException(422, f"Signal name {name!r} must be 1 to 128 letters, digits or '_ . : -'")
    problem = unstorable_at(body.payload, "payload")
    if problem is not None:
        raise HTTPException(422, problem)
    woken = await signal_waits.send_signal(engine_context(request), namespace, run_id, name, body.payload)
    return {"run_id": run_id, "name": name, "woken": woken}
