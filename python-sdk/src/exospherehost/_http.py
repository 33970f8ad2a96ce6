"""What every HTTP client of the SDK shares: error mapping, contract parsing, retries with backoff.

Every request goes through an :class:`ApiClient`, which turns an error answer into a typed
:class:`~exospherehost.errors.ApiError` carrying the server's message, and a network failure into
:class:`~exospherehost.errors.ServerUnavailableError`. :meth:`ApiClient.request_with_retry` repeats
requests that may succeed later (network errors, 408, 429, 5xx) with capped, jittered backoff; every
other 4xx is final.

Two transports carry the requests, chosen by measurement (``bench/client_bench.py``,
docs/benchmarks.md):

* the runtime's (:class:`~exospherehost._aiohttp_client.AiohttpClient`): aiohttp, which costs the
  client 3 to 10 times less CPU per request than httpx; claims, results, heartbeats and streamed
  chunks are the SDK's hot path;
* :class:`~exospherehost.StateManager`'s (:class:`~exospherehost._httpx_client.HttpxClient`): httpx.
  A ``StateManager`` is commonly called from a fresh ``asyncio.run()`` each time and keeps one pooled
  client per event loop; an httpx client left behind on a finished loop is dropped silently, an
  aiohttp session cannot be closed from another loop and logs "Unclosed client session". It also
  reads the run events stream.

Only the transport differs: both answer with an :class:`Answer`, and everything that decides what a
caller sees (this module) is shared, so both behave alike.
"""

from __future__ import annotations

import abc
import asyncio
import json as jsonlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar, overload

from pydantic import BaseModel, ValidationError

from ._version import VERSION
from .errors import ApiError, ServerUnavailableError, UnexpectedAnswerError, error_for_status

logger = logging.getLogger("exospherehost")

DEFAULT_TIMEOUT_SECONDS = 30.0
USER_AGENT = f"exospherehost-python/{VERSION}"
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


@dataclass(frozen=True)
class Answer:
    """One HTTP answer as the transport received it: status, body bytes, reason phrase, text encoding.

    Example::

        answer = Answer(404, b'{"detail": "Graph not found"}', "Not Found")
        error_from_response(answer, "Reading graph g")  # NotFoundError: Reading graph g failed: 404 ...
    """

    status_code: int
    content: bytes
    reason: str = ""
    encoding: str = "utf-8"  # the charset the answer declared, else UTF-8

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        """The body decoded as JSON; raises ValueError when it is not JSON."""
        return jsonlib.loads(self.content)


def encode_json(body: Any) -> bytes:
    """A request's JSON body: compact UTF-8, and NaN or infinity refused (JSON has neither)."""
    return jsonlib.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def error_from_response(answer: Answer, action: str) -> ApiError:
    """Map an error answer to the most specific :class:`ApiError` subclass."""
    return error_for_status(answer.status_code, _detail(answer), action)


def _detail(answer: Answer) -> Any:
    try:
        body = answer.json()
    except ValueError:
        return answer.text or answer.reason
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def parse_answer(model: type[M], answer: Answer, action: str) -> M:
    """A success answer as the contract's ``model``; :class:`UnexpectedAnswerError` naming what does not fit."""
    try:
        body = answer.json()
    except ValueError:
        shown = answer.text[:200] if answer.content else "an empty body"
        raise UnexpectedAnswerError(answer.status_code, f"the answer is not JSON: {shown!r}", action) from None
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'the answer'}: {error['msg']}"
            for error in exc.errors(include_url=False)[:_PROBLEMS_SHOWN]
        ]
        detail = f"the answer does not fit {model.__name__}: {'; '.join(problems)}"
        raise UnexpectedAnswerError(answer.status_code, detail, action) from None


def server_unavailable(exc: BaseException, action: str, *, sent: bool, timed_out: bool) -> ServerUnavailableError:
    """The error for a request that got no answer.

    ``sent`` is False only when the request surely never reached the server (the connection was
    never made), so that even a non-idempotent request may be sent again. An answer that cannot be
    read (a corrupt compressed body, say) counts as a lost answer: the request may have been applied.
    """
    # "server unavailable" leads: it is what a runtime's log says while a server restarts.
    error = ServerUnavailableError(None, f"server unavailable ({type(exc).__name__}: {exc or 'no answer'})", action)
    error.request_sent = sent
    error.timed_out = timed_out
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


class ApiClient(abc.ABC):
    """A keep-alive connection pool to one state manager, with the API key on every request.

    ``base_url`` is the versioned prefix, e.g. ``http://localhost:8000/v0``; a path that is a whole
    URL is sent as it is. ``key=None`` sends no key (a local server started without one accepts
    that). Subclasses carry the requests (:meth:`_send`); what a caller sees is decided here.

    Example::

        async with AiohttpClient("http://localhost:8000/v0", key="secret") as api:
            graph = await api.request("GET", "/namespace/demo/graph/g", action="Reading graph g")
    """

    def __init__(self, base_url: str, key: str | None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.headers = {"user-agent": USER_AGENT, **({"x-api-key": key} if key else {})}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the pooled connections."""

    @abc.abstractmethod
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
        """Send one request and read its whole answer; :func:`server_unavailable` when none came.

        ``timeout`` (default: the client's) bounds connecting, waiting for a pooled connection, and
        each read. ``json`` goes as :func:`encode_json`'s bytes.
        """

    def url(self, path: str) -> str:
        """The URL of ``path``: below ``base_url``, unless it is a whole URL already."""
        return path if "://" in path else self.base_url + path

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
        response = await self._send(
            method, path, json=json, params=params, timeout=timeout, action=action, content=content, headers=headers
        )
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
        response = await self._send(
            "GET", path, json=None, params=None, timeout=None, action=action, content=None, headers=None
        )
        if not response.is_success:
            raise error_from_response(response, action)
        return response.text

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
