"""Server-sent event streams of a run's change feed: what `/v0` run events and the dashboard's live view share.

Both follow the replica's one producer per run (`engine/run_feed.py`), so a stream runs no query of
its own: it formats the snapshots the producer hands it (each encoded once for all streams) and
sends them. Both count against one per-client-address limit (`LiveViews`), end at once when the
server begins to stop (clients reconnect, with `Last-Event-ID` for `/v0`), and send a comment now
and then so that proxies keep the connection open.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from exosphere_server.api.deps import engine_context
from exosphere_server.engine.run_feed import RunFollower

KEEP_ALIVE_S = 15.0  # a comment after this long without an event
RETRY_MS = 1000  # how long an EventSource waits before reconnecting
KEEP_ALIVE = ": keep-alive\n\n"
RETRY = f"retry: {RETRY_MS}\n\n"


class LiveViews:
    """How many run streams (dashboard live views and `/v0` run events) each client address holds open,
    against one limit (`EXOSPHERE_MAX_LIVE_VIEWS_PER_CLIENT`)."""

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


def sse_event(event: str, data: str, event_id: int | None = None) -> str:
    """One server-sent event; `data` is JSON text, which holds no newline."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n"


class RunStreamResponse(StreamingResponse):
    """An event stream that releases its run follower and live-view slot however the response ends, even
    when the client leaves before the stream's first byte (its generator then never runs)."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], resources: contextlib.AsyncExitStack) -> None:
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        self._resources = resources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._resources.aclose()


async def follow_for_stream(
    request: Request, namespace: str, run_id: str
) -> tuple[RunFollower, contextlib.AsyncExitStack]:
    """Follow a run for a stream: `NotFound` (404) for a run not in `namespace`, 429 when the client address
    holds its limit of streams. Hand the returned stack to `RunStreamResponse`, which releases both."""
    ctx = engine_context(request)
    resources = contextlib.AsyncExitStack()
    try:
        follower = await resources.enter_async_context(ctx.feed.follow(namespace, run_id))
        live_views: LiveViews = request.app.state.live_views
        client = request.client.host if request.client else "unknown"
        if not live_views.open(client):
            raise HTTPException(
                status_code=429,
                detail=(
                    f"Too many live views from this address (at most {live_views.limit}): "
                    "close some dashboard tabs or run event streams"
                ),
                headers={"Retry-After": "5"},
            )
        resources.callback(live_views.close, client)
    except BaseException:
        await resources.aclose()
        raise
    return follower, resources
