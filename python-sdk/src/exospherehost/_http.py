"""The one place that talks HTTP: a pooled client, error mapping and retries with backoff.

Every request goes through :class:`ApiClient`, which turns an error answer into a typed
:class:`~exospherehost.errors.ApiError` carrying the server's message, and a network failure into
:class:`~exospherehost.errors.ServerUnavailableError`. :meth:`ApiClient.request_with_retry` repeats
requests that may succeed later (network errors, 408, 429, 5xx) with capped, jittered backoff; every
other 4xx is final.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar, overload

import httpx
from pydantic import BaseModel, ValidationError

from ._version import VERSION
from .errors import ApiError, ServerUnavailableError, UnexpectedAnswerError, error_for_status

logger = logging.getLogger("exospherehost")

DEFAULT_TIMEOUT_SECONDS = 30.0
# Failures are logged at WARNING on the first attempt and then once every this many attempts.
_LOG_EVERY_N_ATTEMPTS = 10
# How many of an unexpected answer's problems its error names.
_PROBLEMS_SHOWN = 5

M = TypeVar("M", bound=BaseModel)


@dataclass
class Backoff:
    """Capped exponential backoff with "equal jitter": each delay is in ``[d/2, d]``.

    The lower half keeps a retry from ever spinning; the random upper half keeps many clients
    from reconnecting in lockstep after an outage.

    Example::

        backoff = Backoff(initial=0.1, maximum=5.0)
        await backoff.sleep()   # ~0.05-0.1 s, then ~0.1-0.2 s, ... never more than 5 s
        backoff.reset()         # after a success
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    attempts: int = field(default=0, init=False)

    def next_delay(self) -> float:
        """The delay before the next attempt; each call grows the following one."""
        ceiling = min(self.maximum, self.initial * self.multiplier**self.attempts)
        self.attempts += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    async def sleep(self) -> float:
        """Sleep for :meth:`next_delay` seconds and return how long that was."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.attempts = 0


def error_from_response(response: httpx.Response, action: str) -> ApiError:
    """Map an error answer to the most specific :class:`ApiError` subclass."""
    return error_for_status(response.status_code, _detail(response), action)


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def parse_answer(model: type[M], response: httpx.Response, action: str) -> M:
    """A success answer as the contract's ``model``; :class:`UnexpectedAnswerError` naming what does not fit."""
    try:
        body = response.json()
    except ValueError:
        shown = response.text[:200] if response.content else "an empty body"
        raise UnexpectedAnswerError(response.status_code, f"the answer is not JSON: {shown!r}", action) from None
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'the answer'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:_PROBLEMS_SHOWN]
        ]
        detail = f"the answer does not fit {model.__name__}: {'; '.join(problems)}"
        raise UnexpectedAnswerError(response.status_code, detail, action) from None


def _unavailable(exc: httpx.RequestError, action: str) -> ServerUnavailableError:
    # A connect failure means the request never reached the server, so even a non-idempotent
    # request may be sent again. An answer that cannot be read (a corrupt compressed body, say) is
    # treated like a lost answer: the request may have been applied, and is retried as such.
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    # "server unavailable" leads: it is what a runtime's log says while a server restarts.
    error = ServerUnavailableError(None, f"server unavailable ({type(exc).__name__}: {exc or 'no answer'})", action)
    error.request_sent = sent
    error.timed_out = isinstance(exc, httpx.TimeoutException)
    return error


@dataclass(frozen=True)
class ServerSentEvent:
    """One event of a ``text/event-stream`` answer: its ``event`` name (``message`` when unnamed), ``data``
    (the ``data:`` lines joined by newlines) and ``id`` (``None`` when the event set none)."""

    event: str
    data: str
    id: str | None


async def parse_event_stream(lines: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
    """Events from the lines of a server-sent event stream (the WHATWG rules: comments, fields, blank lines).

    Example::

        async for event in parse_event_stream(response.aiter_lines()):
            print(event.event, event.id, event.data)
    """
    event, event_id = "", None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield ServerSentEvent(event or "message", "\n".join(data), event_id)
            event, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue  # a comment: the server's keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\x00" not in value:
            event_id = value


class ApiClient:
    """A keep-alive connection pool to one state manager, with the API key on every request.

    ``base_url`` is the versioned prefix, e.g. ``http://localhost:8000/v0``. ``key=None`` sends no
    key (a local server started without one accepts that).

    Example::

        async with ApiClient("http://localhost:8000/v0", key="secret") as api:
            graph = await api.request("GET", "/namespace/demo/graph/g", action="Reading graph g")
    """

    def __init__(
        self,
        base_url: str,
        key: str | None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"user-agent": f"exospherehost-python/{VERSION}", **({"x-api-key": key} if key else {})},
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        answer: type[M],
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        action: str = "",
        content: AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> M: ...

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        answer: None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        action: str = "",
        content: AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        answer: type[M] | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        action: str = "",
        content: AsyncIterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request and return its answer: parsed as the contract's ``answer`` model when given,
        else the decoded JSON body (``None`` when empty).

        Raises an :class:`ApiError` subclass for any status outside 2xx,
        :class:`ServerUnavailableError` when no answer arrived and :class:`UnexpectedAnswerError` when
        a success answer is not an ``answer``. ``content`` sends a body written as it is produced
        (each piece goes on the wire as soon as it is yielded), instead of ``json``.
        """
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        if content is not None:
            extra["content"] = content
        try:
            response = await self._client.request(method, path, json=json, params=params, headers=headers, **extra)
        except httpx.RequestError as exc:
            raise _unavailable(exc, action) from exc
        if not response.is_success:
            raise error_from_response(response, action)
        if answer is not None:
            return parse_answer(answer, response, action)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    async def get_text(self, path: str, *, action: str = "") -> str:
        """GET a ``text/plain`` answer as its text, never decoded as JSON (a value may look like JSON).

        Raises like :meth:`request`.
        """
        try:
            response = await self._client.get(path)
        except httpx.RequestError as exc:
            raise _unavailable(exc, action) from exc
        if not response.is_success:
            raise error_from_response(response, action)
        return response.text

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
                    raise error_from_response(response, action)
                async for event in parse_event_stream(response.aiter_lines()):
                    yield event
        except httpx.RequestError as exc:
            raise _unavailable(exc, action) from exc

    @overload
    async def request_with_retry(
        self,
        method: str,
        path: str,
        *,
        answer: type[M],
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        action: str = "",
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        retry_if: Callable[[ApiError], bool] | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> M: ...

    @overload
    async def request_with_retry(
        self,
        method: str,
        path: str,
        *,
        answer: None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        action: str = "",
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        retry_if: Callable[[ApiError], bool] | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> Any: ...

    async def request_with_retry(
        self,
        method: str,
        path: str,
        *,
        answer: type[M] | None = None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
        action: str = "",
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        retry_if: Callable[[ApiError], bool] | None = None,
        give_up: Callable[[], bool] | None = None,
    ) -> Any:
        """Like :meth:`request`, but repeat retryable failures with backoff until one is accepted.

        A failure is retried when ``retry_if`` says so (default: :attr:`ApiError.retryable`, i.e.
        network errors, 408, 429 and 5xx). Retrying stops after ``max_attempts`` attempts (unlimited
        by default) or as soon as ``give_up()`` returns true; the last error is raised then.
        """
        backoff = backoff or Backoff()
        should_retry = retry_if or (lambda error: error.retryable)
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self.request(
                    method, path, answer=answer, json=json, params=params, timeout=timeout, action=action
                )
            except ApiError as error:
                out_of_attempts = max_attempts is not None and attempt >= max_attempts
                if not should_retry(error) or out_of_attempts or (give_up is not None and give_up()):
                    raise
                delay = backoff.next_delay()
                level = logging.WARNING if attempt % _LOG_EVERY_N_ATTEMPTS == 1 else logging.DEBUG
                logger.log(level, "%s; retrying in %.2f s (attempt %d)", error, delay, attempt)
                await asyncio.sleep(delay)
                continue
            if attempt > 1:
                logger.info("%s succeeded after %d attempts", action or f"{method} {path}", attempt)
            return result
