"""The Host header check, against DNS rebinding: a page on an attacker's domain that re-resolves to
this server (127.0.0.1 included) sends that domain as Host. Only the names in
`Settings.allowed_hosts` (`EXOSPHERE_ALLOWED_HOSTS`) are served; `*` serves any, and `*.example.com`
any subdomain of example.com. Every path is checked, `/health` too.

Example::

    app.add_middleware(HostCheckMiddleware, allowed_hosts=("localhost", "127.0.0.1", "[::1]"))
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from exosphere_server.config import ANY_HOST


def host_name(header: str) -> str:
    """The Host header without its port: `[::1]:8000` -> `[::1]`, `Example.com:80` -> `example.com`."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[: header.find("]") + 1] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def host_allowed(name: str, allowed: Sequence[str]) -> bool:
    for pattern in allowed:
        if pattern == ANY_HOST or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class HostCheckMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        self.app = app
        self.allowed_hosts = tuple(h.strip().lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or ANY_HOST in self.allowed_hosts:
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("host", "")
        if host_allowed(host_name(given), self.allowed_hosts):
            await self.app(scope, receive, send)
            return
        detail = (
            f"Host {given!r} is not served here: use one of {', '.join(self.allowed_hosts)}, "
            "or add it to EXOSPHERE_ALLOWED_HOSTS"
        )
        await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
