"""The API key check: one dependency for every `/v0` route, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request


def api_key_matches(request: Request, given: str | None) -> bool:
    expected: str | None = request.app.state.settings.api_key
    if expected is None:
        return True  # loopback without a configured key: a local development server
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_api_key(request: Request) -> None:
    if not api_key_matches(request, request.headers.get("x-api-key")):
        raise HTTPException(status_code=401, detail="Invalid API key")
