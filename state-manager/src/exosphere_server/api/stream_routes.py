"""Live streams out of running nodes (docs/agents.md, "Live streams"): runtimes upload, clients follow.

The upload is one request per stretch of an attempt: a body of JSON strings, one per line, read as
it arrives, so a runtime may keep one request open and write each chunk the moment its node streams
it (a few requests per attempt, each chunk on the wire at once), or send a batch in one go.
Following is server-sent events, resumable with `Last-Event-ID`, ending with the attempt.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated

from exospherehost.contract import StreamAppendResponse
from fastapi import APIRouter, Header, HTTPException, Query, Request
from starlette.responses import Response

from exosphere_server.api.deps import engine_context
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.run_stream import KEEP_ALIVE, RETRY, LiveViews, RunStreamResponse, sse_event
from exosphere_server.engine import live_streams
from exosphere_server.engine.errors import BadRequest

router = APIRouter()
STREAM = "/namespace/{namespace_name}/state/{state_id}/stream"
MAX_OFFSET = 2**31 - 1
NDJSON = {"application/x-ndjson": {"schema": {"type": "string", "description": "One JSON string per line"}}}


@router.post(
    STREAM,
    response_model=StreamAppendResponse,
    openapi_extra={"requestBody": {"required": True, "content": NDJSON}},
)
async def append_stream(
    namespace_name: str,
    state_id: str,
    request: Request,
    lease_id: str = Query(min_length=1, max_length=200, description="The lease of the attempt that streams"),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET, description="The offset of the body's first chunk"),
) -> Response:
    """Append chunks to the held attempt's stream (additive; sent by runtimes for `BaseNode.stream`).

    The body holds one JSON string per line; the chunks take offsets `offset`, `offset + 1`, … and are
    stored as they arrive (a chunk already stored at its offset is kept: resending a batch is harmless).
    The answer, once every chunk is stored, gives the next offset. `409` when the lease no longer holds
    the state, `400` naming the first line that is not a storable JSON string.
    """
    ctx = engine_context(request)
    attempt = await live_streams.held_attempt(ctx.storage, namespace_name, state_id, lease_id)
    position, rest = offset, b""
    async for piece in request.stream():
        lines = (rest + piece).split(b"\n")
        rest = lines.pop()
        position = await _store_lines(request, state_id, attempt, position, lines)
    position = await _store_lines(request, state_id, attempt, position, [rest])
    return SafeJSONResponse({"attempt": attempt, "next_offset": position})


async def _store_lines(request: Request, state_id: str, attempt: int, position: int, lines: list[bytes]) -> int:
    texts: list[object] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            texts.append(json.loads(line))
        except ValueError as exc:
            raise BadRequest(f"Stream chunk at offset {position + len(texts)}: not a JSON string ({exc})") from exc
    if not texts:
        return position
    if position + len(texts) > MAX_OFFSET:
        raise BadRequest(f"A stream holds at most {MAX_OFFSET} chunks")
    checked = live_streams.check_texts(texts, position)
    await engine_context(request).stream_writer.write(live_streams.chunk_records(state_id, attempt, position, checked))
    return position + len(checked)


@router.get(STREAM, responses={200: {"content": {"text/event-stream": {}}}})
async def state_stream(
    namespace_name: str,
    state_id: str,
    request: Request,
    from_offset: int = Query(default=0, ge=0, le=MAX_OFFSET, alias="from", description="The first chunk's offset"),
    attempt: int | None = Query(default=None, ge=1, le=MAX_OFFSET, description="Default: the latest attempt"),
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", pattern=r"^[0-9]{0,10}$", description="Resume after this chunk's offset"),
    ] = None,
) -> RunStreamResponse:
    """Server-sent events of an attempt's live stream (additive; `StateManager.stream_state`).

    A `chunk` event per chunk (`StreamChunk`, its offset as the event id), from `from` (or after
    `Last-Event-ID`), live while the attempt runs; then one `end` event (`StreamEnd`) once the attempt
    has ended and every chunk is sent, and the stream closes. `404` for a state not in the namespace.
    """
    if last_event_id:
        from_offset = int(last_event_id) + 1
    return await open_state_stream(request, namespace_name, state_id, attempt, from_offset)


async def open_state_stream(
    request: Request, namespace: str, state_id: str, attempt: int | None, from_offset: int
) -> RunStreamResponse:
    """A state stream response, for `/v0` and the dashboard: 404 now (not inside the stream) for an unknown
    state, 429 when the client address holds its limit of live views."""
    ctx = engine_context(request)
    followed, events = await live_streams.open_stream(
        ctx.storage, ctx.streams, namespace, state_id, attempt, from_offset
    )
    resources = contextlib.AsyncExitStack()
    live_views: LiveViews = request.app.state.live_views
    client = request.client.host if request.client else "unknown"
    if not live_views.open(client):
        raise HTTPException(
            status_code=429,
            detail=(
                f"Too many live views from this address (at most {live_views.limit}): "
                "close some dashboard tabs or event streams"
            ),
            headers={"Retry-After": "5"},
        )
    resources.callback(live_views.close, client)
    resources.push_async_callback(events.aclose)
    return RunStreamResponse(_sse(followed, events), resources)


async def _sse(attempt: int, events: AsyncIterator[live_streams.StreamEvent]) -> AsyncIterator[str]:
    yield RETRY
    async for event in events:
        if isinstance(event, live_streams.ChunksRead):
            # One write for the whole batch: each send passes every middleware, and a busy stream
            # brings several chunks per wake-up.
            yield "".join(
                sse_event("chunk", json.dumps({"attempt": attempt, "offset": offset, "text": text}), offset)
                for offset, text in enumerate(event.texts, start=event.first_position)
            )
        elif isinstance(event, live_streams.StreamEnded):
            data = json.dumps({"attempt": attempt, "next_offset": event.next_position, "status": event.status})
            yield sse_event("end", data)
        else:
            yield KEEP_ALIVE
