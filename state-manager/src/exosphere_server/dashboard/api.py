"""The dashboard's JSON and server-sent-event endpoints under `/dashboard/api`, behind the session cookie.

The live run graph reads `GET .../runs/{run_id}/progress` (per template node: counts by status, one
GROUP BY in the database) and follows `.../runs/{run_id}/events`, which sends the same payload each
time it changes. Individual states are listed a page at a time, only when a node is opened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from exospherehost.statuses import PHASE
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from exosphere_server.api.auth import reject_nul_characters
from exosphere_server.api.deps import engine_context
from exosphere_server.dashboard import data, session
from exosphere_server.dashboard.rendering import when
from exosphere_server.engine import inspection, transitions
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.errors import NotFound
from exosphere_server.engine.wakeups import run_key
from exosphere_server.storage.records import StateRecord

router = APIRouter(prefix="/api", dependencies=[Depends(session.require_api_session), Depends(reject_nul_characters)])
RUN = "/ns/{namespace}/runs/{run_id}"
POLL_PENDING_S = 2.0  # changes on other replicas are not announced here: look again this often
POLL_FINISHED_S = 5.0
MIN_INTERVAL_S = 0.25
KEEP_ALIVE_S = 15.0
# A stream ends after this long and EventSource reconnects: no connection outlives a server shutdown by much.
STREAM_LIFETIME_S = 30.0


class LiveViews:
    """How many live run streams each client address holds open, against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    def open(self, client: str) -> bool:
        if self._open.get(client, 0) >= self.limit:
            return False
        self._open[client] = self._open.get(client, 0) + 1
        return True

    def close(self, client: str) -> None:
        left = self._open.get(client, 1) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)


async def _progress_events(ctx: EngineContext, namespace: str, run_id: str) -> AsyncIterator[str]:
    """The run's progress each time it changes: woken by this replica's commits, and looking again
    now and then for changes made on another replica. Ends on shutdown and after a lifetime."""
    loop = asyncio.get_running_loop()
    started = last_sent = loop.time()
    previous = None
    yield "retry: 1000\n\n"
    while loop.time() - started < STREAM_LIFETIME_S and not ctx.wakeups.closing:
        with ctx.wakeups.watch([run_key(run_id)]) as waiter:
            try:
                view = (await data.run_progress(ctx, namespace, run_id)).view()
            except NotFound:
                yield "event: gone\ndata: {}\n\n"
                return
            payload = json.dumps(view, sort_keys=True)
            if payload != previous:
                previous, last_sent = payload, loop.time()
                yield f"event: progress\ndata: {payload}\n\n"
            elif loop.time() - last_sent > KEEP_ALIVE_S:
                last_sent = loop.time()
                yield ": keep-alive\n\n"
            await waiter.wait(POLL_FINISHED_S if view["finished"] else POLL_PENDING_S)
        await asyncio.sleep(MIN_INTERVAL_S)  # a busy run changes constantly: one query per interval at most


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
async def run_events(namespace: str, run_id: str, request: Request) -> StreamingResponse:
    """Server-sent events: `progress` whenever the run's counts change, a comment now and then to keep alive.

    Each client address may hold a bounded number of these streams (`EXOSPHERE_MAX_LIVE_VIEWS_PER_CLIENT`):
    every open one costs a query per change of its run.
    """
    ctx = engine_context(request)
    await data.run_progress(ctx, namespace, run_id)  # a 404 now, not inside the stream
    live_views: LiveViews = request.app.state.live_views
    client = request.client.host if request.client else "unknown"
    if not live_views.open(client):
        raise HTTPException(
            status_code=429,
            detail=f"Too many live views from this address (at most {live_views.limit}): close some dashboard tabs",
            headers={"Retry-After": "5"},
        )

    async def stream() -> AsyncIterator[str]:
        try:
            async for event in _progress_events(ctx, namespace, run_id):
                yield event
        finally:
            live_views.close(client)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


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
