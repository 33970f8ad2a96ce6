"""The hot routes' ordinary requests answered without FastAPI's routing and dependency layers.

A trigger spent about half of the server's CPU in the framework between our middlewares and the
route: matching the path against every route of every included router (twice per level), then
solving the dependencies of the route and of its router. For the routes a runtime or a scheduler
calls thousands of times (`FAST_ROUTES`), this middleware matches the path itself, runs the same
checks (`auth.principal_for_key`, `access.authorize`, the body model, NUL-free path values), calls the
same route function, and maps its errors with the app's own handlers.

Whatever is not the plain case goes to the app, which answers it as always, with the body read here
handed back to it: a wrong or missing key, a locked-out address, a body that does not validate, a
query string, an unusual content type, traces on (FastAPI's spans). So every refusal keeps its exact
status, message and side effects (the lock-out count), and the OpenAPI document is unchanged.

Example::

    app.add_middleware(FastLane, fastapi_app=app)   # innermost: inside the audit trail and body limit
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, get_type_hints

from exospherehost.contract import MAX_IDEMPOTENCY_KEY_LENGTH
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exosphere_server.api import run_routes, state_routes
from exosphere_server.api.access import authorize
from exosphere_server.api.auth import principal_for_key
from exosphere_server.api.lockout import lockout_seconds_left
from exosphere_server.api.schemas import (
    RAW_CHECKED,
    EnqueueRequest,
    ExecutedManyRequest,
    ExecutedRequest,
    TriggerRequest,
)
from exosphere_server.engine.storable import raw_json_surely_storable

Endpoint = Callable[[Request, dict[str, str], Any], Awaitable[Response]]


class _NotPlain(Exception):
    """This request is not the plain case: the app answers it."""


def _no_header_checks(_request: Request) -> bool:
    return True


def _trigger_plain(request: Request) -> bool:
    key = request.headers.get("idempotency-key")
    return key is None or 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH  # else the app's 422 for the header


async def _trigger(request: Request, params: dict[str, str], body: Any) -> Response:
    key = request.headers.get("idempotency-key")
    return await run_routes.trigger(params["namespace_name"], params["graph_name"], body, request, key)


class FastRoute:
    """One route of the app served by the fast lane. Its method and path are the route's own; the
    route function must take exactly its path parameters, `body` (of the model given here) and
    `request`, plus what `endpoint` supplies: checked at start-up, so that a parameter added to the
    route later cannot be silently left out here."""

    def __init__(
        self,
        router: APIRouter,
        function: Callable[..., Any],
        body: type[BaseModel],
        endpoint: Endpoint | None = None,
        plain: Callable[[Request], bool] = _no_header_checks,
        endpoint_gives: frozenset[str] = frozenset(),
    ) -> None:
        self.route = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is function)
        [self.method] = self.route.methods or set()
        # As Starlette matches `{name}`: one path segment, given as text (these routes convert nothing).
        self.path = re.compile("/v0" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.route.path))
        self.body, self.endpoint, self.plain = body, endpoint, plain
        given = {*self.path.groupindex, "body", "request", *endpoint_gives}
        taken = set(inspect.signature(function).parameters)
        if taken != given or get_type_hints(function)["body"] is not body:
            raise RuntimeError(
                f"api/fast_lane.py: {function.__name__} takes {sorted(taken)} (body "
                f"{get_type_hints(function).get('body')}); the fast lane gives {sorted(given)} (body {body}): "
                "update FAST_ROUTES"
            )

    async def answer(self, request: Request, params: dict[str, str], body: Any) -> Response:
        """The route function's answer (the request has passed every check the app would make)."""
        if self.endpoint is not None:
            return await self.endpoint(request, params, body)
        response: Response = await self.route.endpoint(**params, body=body, request=request)
        return response


FAST_ROUTES = (
    FastRoute(
        run_routes.router,
        run_routes.trigger,
        TriggerRequest,
        _trigger,
        _trigger_plain,
        endpoint_gives=frozenset({"idempotency_key"}),
    ),
    FastRoute(state_routes.router, state_routes.enqueue, EnqueueRequest),
    FastRoute(state_routes.router, state_routes.executed_many, ExecutedManyRequest),
    FastRoute(state_routes.router, state_routes.executed, ExecutedRequest),
)


class FastLane:
    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast, params = _match(scope)
        if fast is None or params is None:
            await self.app(scope, receive, send)
            return
        messages = await _read_body(receive)
        try:
            response = await self._answer(scope, receive, fast, params, messages)
        except _NotPlain:
            await self.app(scope, _replay(messages, receive), send)
            return
        await response(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, fast: FastRoute, params: dict[str, str], messages: list[Message]
    ) -> Response:
        request = Request(scope, receive)  # the body is read: `receive` now only tells of a disconnect
        if messages[-1]["type"] != "http.request" or self.fastapi_app.state.ctx.tracing.enabled:
            raise _NotPlain  # a disconnect; FastAPI's own spans
        if not _is_json(request.headers.get("content-type")) or not fast.plain(request):
            raise _NotPlain
        raw = b"".join(m.get("body", b"") for m in messages)
        try:
            body = _parse(raw, fast.body)
        except (ValueError, ValidationError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise _NotPlain from exc
        principal = await principal_for_key(request, request.headers.get("x-api-key"))
        if principal is None or lockout_seconds_left(request) > 0:
            raise _NotPlain  # 401 or 429, and the failure counted, by the app
        scope["route"] = fast.route
        scope["path_params"] = params
        try:
            authorize(request, principal)
            return await fast.answer(request, params, body)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # as from the app: the request id middleware answers 500
            answer = handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer

    def _handler(self, exc: Exception) -> Callable[[Request, Any], Response | Awaitable[Response]] | None:
        """The app's handler of `exc`, as its exception middleware picks it (`Exception` is the 500's)."""
        handlers = self.fastapi_app.exception_handlers
        for kind in type(exc).__mro__:
            if kind is Exception:
                return None
            if kind in handlers:
                return handlers[kind]
        return None


def _parse(raw: bytes, model: type[BaseModel]) -> BaseModel:
    # The body's text is at hand: a few byte searches can spare the walk over every value.
    return model.model_validate(json.loads(raw), context=RAW_CHECKED if raw_json_surely_storable(raw) else None)


def _match(scope: Scope) -> tuple[FastRoute | None, dict[str, str] | None]:
    if scope["type"] != "http" or scope.get("query_string") or scope.get("root_path"):
        return None, None
    path: str = scope["path"]
    if "\x00" in path:
        return None, None  # the app's 422 naming the parameter
    for fast in FAST_ROUTES:
        if scope["method"] == fast.method:
            found = fast.path.fullmatch(path)
            if found is not None:
                return fast, found.groupdict()
    return None, None


def _is_json(content_type: str | None) -> bool:
    # FastAPI reads a body as JSON without a content type too; anything else goes its own way.
    return content_type is None or content_type.split(";", 1)[0].strip().lower() == "application/json"


async def _read_body(receive: Receive) -> list[Message]:
    """The request's messages up to its last body part, or up to a disconnect."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` for the app: the messages already read, then whatever comes next."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
