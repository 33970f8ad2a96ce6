"""A tiny real HTTP/1.1 server on a local port, scripted by the tests.

It lets the unit tests cause real faults (connection refused, a dropped connection, 503 answers,
a server that goes away and comes back) without a mock transport.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    drop: bool = False  # close the connection without answering
    raw: bytes | None = None  # send these bytes as the body instead of `body` as JSON
    headers: dict[str, str] = field(default_factory=dict)
    truncated: bool = False  # announce more bytes than are sent, then close the connection


Handler = Callable[[Request], Awaitable[Reply]]


class FakeServer:
    """Serves ``handler`` on 127.0.0.1; ``stop()``/``start()`` keep the same port."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.port = 0
        self.connections_accepted = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            # Like a killed process: requests being handled die with the server.
            for task in list(self._handlers):
                task.cancel()
            await self._server.wait_closed()
            self._server = None

    @property
    def open_connections(self) -> int:
        """Connections a client holds open (one it closed is gone once the server reads its end)."""
        return len(self._connections)

    def calls(self, suffix: str) -> list[Request]:
        return [request for request in self.requests if request.path.endswith(suffix)]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._connections.add(writer)
        self.connections_accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                self.requests.append(request)
                reply = await self.handler(request)
                if reply.drop:
                    return
                payload = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
                length = len(payload) + (100 if reply.truncated else 0)
                extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers.items())
                head = (
                    f"HTTP/1.1 {reply.status} X\r\ncontent-type: application/json\r\n{extra}"
                    f"content-length: {length}\r\n\r\n"
                )
                writer.write(head.encode() + payload)
                await writer.drain()
                if reply.truncated:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._handlers.discard(task)
            self._connections.discard(writer)
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode().split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":  # a body streamed as it is written
        raw = b""
        while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
            raw += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    else:
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
    url = urlsplit(target)
    return Request(method, url.path, dict(parse_qsl(url.query)), headers, _decoded(raw))


def _decoded(raw: bytes) -> Any:
    """JSON bodies decoded; others (JSON lines) as text."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition the system under test will make true."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
