"""CORS for the API only. Browsers on the allowed origins (`CORS_ORIGINS`, none by default) may call
`/v0` and `/metrics` with a key they hold; they never get credentialed reads (no
`Access-Control-Allow-Credentials`), and `/dashboard` answers carry no CORS headers at all. Without
this, a page on `http://localhost:3000` (the same *site* as a loopback server: ports do not count)
could read dashboard JSON with the user's SameSite=Strict session cookie.
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

DASHBOARD_PREFIX = "/dashboard"


class ApiOnlyCORSMiddleware(CORSMiddleware):
    def __init__(self, app: ASGIApp, allow_origins: Sequence[str]) -> None:
        super().__init__(
            app,
            allow_origins=allow_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"],
            allow_headers=[
                "Accept",
                "Accept-Language",
                "Content-Language",
                "Content-Type",
                "X-API-Key",
                "Authorization",
                "X-Requested-With",
                "X-Exosphere-Request-ID",
            ],
            expose_headers=["X-Exosphere-Request-ID"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
