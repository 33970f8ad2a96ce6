"""Request bodies above the configured size are refused with 413 before they are held in memory.

A declared `Content-Length` over the limit is answered at once, unread. A body without one (chunked)
is counted as it arrives and refused at the first byte past the limit. (Starlette's own limiter
answers a bare "Content Too Large" that names neither the limit nor the setting to change.)
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exosphere_server.api.json_response import SafeJSONResponse


class _TooLarge(HTTPException):
    """An HTTPException, so that the framework's body reading passes it on instead of making it a 400."""

    def __init__(self, max_bytes: int) -> None:
        detail = (
            f"Request body too large: the limit is {max_bytes} bytes "
            "(EXOSPHERE_MAX_REQUEST_BYTES on the server); send less data per request"
        )
        super().__init__(status_code=413, detail=detail)


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _refusal(self) -> SafeJSONResponse:
        return SafeJSONResponse({"detail": _TooLarge(self.max_bytes).detail}, status_code=413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((v for k, v in scope.get("headers", []) if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refusal()(scope, receive, send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if started:
                raise
            await self._refusal()(scope, receive, send)
