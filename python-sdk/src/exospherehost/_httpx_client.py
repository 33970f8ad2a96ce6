"""StateManager's transport: httpx, which also reads the run events stream (server-sent events).

Why httpx here and aiohttp for the runtime: see :mod:`exospherehost._http`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from ._http import (
    DEFAULT_TIMEOUT_SECONDS,
    Answer,
    ApiClient,
    ServerSentEvent,
    encode_json,
    error_from_response,
    parse_event_stream,
    server_unavailable,
)
from .errors import ServerUnavailableError


class HttpxClient(ApiClient):
    """An :class:`ApiClient` on httpx (environment proxies and ``SSL_CERT_FILE`` honoured, as httpx does).

    Example::

        async with HttpxClient("http://localhost:8000/v0", key="secret") as api:
            async for event in api.stream_events("/namespace/demo/run/r1/events", read_timeout=45):
                print(event.event, event.data)
    """

    def __init__(
        self,
        base_url: str,
        key: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_connections: int = 16,
    ) -> None:
        super().__init__(base_url, key, timeout=timeout)
        # Raises httpx.InvalidURL for a base URL that is not one.
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self.headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        params: dict[str, Any] | None,
        timeout: float | None,
        action: str,
        content: AsyncIterator[bytes] | None,
        headers: dict[str, str] | None,
    ) -> Answer:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        if content is not None:
            extra["content"] = content
        elif json is not None:
            extra["content"] = encode_json(json)
            headers = {"content-type": "application/json", **(headers or {})}
        try:
            response = await self._client.request(method, path, params=params, headers=headers, **extra)
        except httpx.RequestError as exc:
            raise _unavailable(exc, action) from exc
        return Answer(response.status_code, response.content, response.reason_phrase, response.encoding or "utf-8")

    async def stream_events(
        self, path: str, *, headers: dict[str, str] | None = None, read_timeout: float, action: str = ""
    ) -> AsyncIterator[ServerSentEvent]:
        """Open a server-sent event stream and yield its events until the server ends it.

        Raises an :class:`ApiError` subclass when the server refuses the stream (before any event) and
        :class:`ServerUnavailableError` when the connection fails or drops, or nothing (not even a
        keep-alive comment) arrives for ``read_timeout`` seconds.
        """
        timeout = httpx.Timeout(self._client.timeout.connect, read=read_timeout)
        try:
            async with self._client.stream(
                "GET", path, headers={"accept": "text/event-stream", **(headers or {})}, timeout=timeout
            ) as response:
                if not response.is_success:
                    await response.aread()
                    answer = Answer(response.status_code, response.content, response.reason_phrase)
                    raise error_from_response(answer, action)
                async for event in parse_event_stream(response.aiter_lines()):
                    yield event
        except httpx.RequestError as exc:
            raise _unavailable(exc, action) from exc


def _unavailable(exc: httpx.RequestError, action: str) -> ServerUnavailableError:
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    return server_unavailable(exc, action, sent=not never_sent, timed_out=isinstance(exc, httpx.TimeoutException))
