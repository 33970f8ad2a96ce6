"""`x-exosphere-request-id`: accepted when it is a UUID, generated otherwise, echoed on every answer, logged.

Each HTTP request also gets one structured access log event (`http_request`: method, path, status,
duration_ms, request_id). Never bodies, query strings or headers: they can carry secrets and keys.
"""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-exosphere-request-id"
access_log = structlog.get_logger("exosphere.access")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == HEADER:
            text: str = value.decode("latin-1")
            try:
                uuid.UUID(text)
            except ValueError:
                break
            return text
    return str(uuid.uuid4())


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER, request_id.encode("latin-1"))]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if status is not None:
                raise  # the answer is already on its way; nothing better can be sent
            # Answered here rather than by the outermost error middleware, so that the 500 carries the
            # request id header and its log event the request id (PROTOCOL §1.4, §1.5).
            access_log.exception("unhandled_error", error_type=type(exc).__name__)
            answer = JSONResponse({"success": False, "detail": "internal server error"}, status_code=500)
            await answer(scope, receive, send_with_id)
        finally:
            access_log.info(
                "http_request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status if status is not None else 500,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
            )
            structlog.contextvars.unbind_contextvars("request_id")
