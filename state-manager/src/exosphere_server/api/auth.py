"""The dependencies of every `/v0` route: the API key (compared in constant time), then NUL-free parameters."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError


def api_key_matches(request: Request, given: str | None) -> bool:
    expected: str | None = request.app.state.settings.api_key
    if expected is None:
        return True  # loopback without a configured key: a local development server
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


async def require_api_key(request: Request) -> None:
    if not api_key_matches(request, request.headers.get("x-api-key")):
        raise HTTPException(status_code=401, detail="Invalid API key")


def reject_nul_characters(request: Request) -> None:
    """Path and query values with NUL (U+0000) are a 422 naming the parameter: PostgreSQL cannot store or
    compare such text, so they would be a 500 there (D21). Request bodies get the same check in schemas."""
    params = [("path", k, v) for k, v in request.path_params.items()]
    params += [("query", k, v) for k, v in request.query_params.multi_items()]
    for location, name, value in params:
        if isinstance(value, str) and "\x00" in value:
            message = "must not contain NUL (\\u0000) characters"
            raise RequestValidationError(
                [{"type": "string_nul", "loc": [location, name], "msg": message, "input": value}]
            )
