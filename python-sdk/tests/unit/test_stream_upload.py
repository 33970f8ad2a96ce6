"""The runtime's upload of what a node streams, against a scripted real HTTP server: chunks in order,
a failed request sent again from its first chunk, a lost lease ending the stream."""

from __future__ import annotations

import json

import pytest
from exospherehost._aiohttp_client import AiohttpClient
from exospherehost._stream_upload import StreamUpload
from fake_server import FakeServer, Reply, Request

pytestmark = pytest.mark.asyncio
PATH = "/namespace/ns/state/s1/stream"


def _texts(request: Request) -> list[str]:
    body = request.body if isinstance(request.body, str) else json.dumps(request.body)
    return [json.loads(line) for line in body.splitlines() if line]


async def test_a_failed_request_is_sent_again_from_its_first_chunk_and_close_waits_for_the_server() -> None:
    stored: list[str] = []
    failures = [Reply(status=503, body={"detail": "restarting"})]

    async def handler(request: Request) -> Reply:
        if failures:
            return failures.pop()
        offset = int(request.query["offset"])
        texts = _texts(request)
        stored[offset : offset + len(texts)] = texts  # as the server keeps a chunk per offset
        return Reply(body={"attempt": 1, "next_offset": offset + len(texts)})

    server = FakeServer(handler)
    await server.start()
    try:
        async with AiohttpClient(f"{server.url}/v0", "key") as api:
            upload = StreamUpload(api, PATH, "lease-1", give_up=lambda: False)
            for word in ("Once ", "upon ", "a ", "time"):
                await upload.append(word)
            await upload.close()
            assert stored == ["Once ", "upon ", "a ", "time"]
            calls = server.calls("/stream")
            assert [c.query["lease_id"] for c in calls] == ["lease-1"] * len(calls)
            assert calls[0].query["offset"] == calls[1].query["offset"] == "0"  # the resend starts over
            assert _texts(calls[1])[: len(_texts(calls[0]))] == _texts(calls[0])
            assert calls[1].headers["content-type"] == "application/x-ndjson"
            with pytest.raises(RuntimeError, match="stream is closed"):
                await upload.append("late")
    finally:
        await server.stop()


async def test_a_lost_lease_ends_the_stream_and_close_returns() -> None:
    async def handler(request: Request) -> Reply:
        return Reply(status=409, body={"detail": "Lease lost: state s1 is CANCELLED"})

    server = FakeServer(handler)
    await server.start()
    try:
        async with AiohttpClient(f"{server.url}/v0", "key") as api:
            upload = StreamUpload(api, PATH, "lease-1", give_up=lambda: False)
            await upload.append("hello")
            await upload.close()
            assert len(server.calls("/stream")) == 1  # not sent again: the attempt is over
            with pytest.raises(TypeError, match="takes text"):
                await upload.append(b"bytes")  # type: ignore[arg-type]
    finally:
        await server.stop()
