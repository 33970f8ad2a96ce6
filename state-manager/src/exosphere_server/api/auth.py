"""The dependencies of every `/v0` route: the API key (who is calling, `authenticate`), whether that key
may call the route (`api/access.py`), then NUL-free parameters; and the key check of `/metrics`.
Wrong keys count towards the client address's lock-out (`lockout.py`).

The key is `STATE_MANAGER_SECRET` (compared in constant time: the admin `root`) or a scoped key
created with `exosphere key create`, looked up in storage on every request (`engine/keys.py`)."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError

from exosphere_server.api.access import authorize
from exosphere_server.api.deps import engine_context
from exosphere_server.api.lockout import note_failure, refuse_if_locked_out
from exosphere_server.config import Settings
from exosphere_server.engine.keys import LOCAL, ROOT, Principal, key_for_secret, principal_of


def key_equals(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _check(request: Request, given: str | None, matches: bool) -> None:
    """Count a wrong key first, so that the failure which reaches the limit already answers 429."""
    if not matches and given is not None:
        note_failure(request)
    refuse_if_locked_out(request)
    if not matches:
        raise HTTPException(status_code=401, detail="Invalid API key")


async def principal_for_key(request: Request, given: str | None) -> Principal | None:
    """Who `given` is, or None for a key that is wrong or revoked (the caller answers 401).

    A keyless local server lets everyone in as admin, but still honours a scoped key it is sent, so
    that roles can be tried out on a laptop.
    """
    settings: Settings = request.app.state.settings
    if settings.api_key is not None and given is not None and key_equals(given, settings.api_key):
        return ROOT
    record = await key_for_secret(engine_context(request), given) if given else None
    if record is not None and record.revoked_at is None:
        return principal_of(record)
    return LOCAL if settings.api_key is None and record is None else None


async def authenticate(request: Request, given: str | None) -> Principal:
    """The caller of a `/v0` route or of the dashboard login; 401 (or 429 when locked out) otherwise."""
    principal = await principal_for_key(request, given)
    _check(request, given, principal is not None)
    assert principal is not None  # _check raised otherwise
    return principal


async def require_api_key(request: Request) -> None:
    """Every `/v0` route: a known key (401 otherwise) with a role that may call the route (403)."""
    authorize(request, await authenticate(request, request.headers.get("x-api-key")))


def _metrics_credential(request: Request) -> str | None:
    """Prometheus sends `Authorization: Bearer <key>`; curl users tend to send `x-api-key`."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.headers.get("x-api-key")


async def require_metrics_key(request: Request) -> None:
    """`/metrics` names namespaces and nodes: it takes the API key or the separate metrics key, and is
    open only on a server with neither (a loopback development server)."""
    settings: Settings = request.app.state.settings
    keys = [k for k in (settings.api_key, settings.metrics_key) if k is not None]
    if not keys:
        return
    given = _metrics_credential(request)
    # Every key compared, not the first match only: the time taken says nothing about which one was close.
    matches = [key_equals(given, key) for key in keys]
    _check(request, given, any(matches))


async def reject_nul_characters(request: Request) -> None:
    """Path and query values with NUL (U+0000) are a 422 naming the parameter: PostgreSQL cannot store or
    compare such text, so they would be a 500 there (D21). Request bodies get the same check in schemas.

    `async` although it awaits nothing: FastAPI runs a plain `def` dependency in a worker thread, a
    thread hop on every request for a check of a few microseconds."""
    params = [("path", k, v) for k, v in request.path_params.items()]
    params += [("query", k, v) for k, v in request.query_params.multi_items()]
    for location, name, value in params:
        if isinstance(value, str) and "\x00" in value:
            message = "must not contain NUL (\\u0000) characters"
            raise RequestValidationError(
                [{"type": "string_nul", "loc": [location, name], "msg": message, "input": value}]
            )
