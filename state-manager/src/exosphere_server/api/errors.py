"""One table from domain errors to status codes, and the handlers that keep every answer JSON."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import structlog
from exospherehost.contract import ErrorResponse
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from exosphere_server.api.json_response import SafeJSONResponse as JSONResponse
from exosphere_server.engine.errors import BadRequest, Conflict, EngineError, GraphTooLarge, NotFound
from exosphere_server.engine.storable import sendable
from exosphere_server.storage.payloads import PayloadTooLarge

log = structlog.get_logger("exosphere.api")

# The refusals every `/v0` route may give (docs/wire-extensions.md), for the OpenAPI document.
REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "The API key is missing or wrong"},
    403: {"model": ErrorResponse, "description": "The key's role or namespace does not allow this call (named)"},
    413: {
        "model": ErrorResponse,
        "description": "The body, or one input or output value, is over the server's size limit",
    },
    429: {"model": ErrorResponse, "description": "Locked out after repeated wrong keys; see Retry-After"},
    503: {"model": ErrorResponse, "description": "The database is unavailable; retry after Retry-After"},
}

STATUS_BY_ERROR: list[tuple[type[EngineError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (BadRequest, 400),
    (GraphTooLarge, 422),
]


def status_code(exc: EngineError) -> int:
    return next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 400)


async def _payload_too_large(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=413)


async def _engine_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    return JSONResponse({"detail": exc.message}, status_code=status_code(exc))


RETRY_AFTER_SECONDS = "2"
SQLITE_UNAVAILABLE = ("locked", "busy", "readonly", "disk", "full", "unable to open", "i/o")


def database_unavailable(exc: Exception) -> bool:
    """Whether an error means the database cannot be reached or written now, rather than a fault of ours.

    Connection failures (refused, reset, a database that accepts no connections: raised while
    connecting, so without a statement), operational errors (SQLite's locked, read-only, full or I/O
    errors; PostgreSQL shutting down) and an exhausted pool all pass when the database is back.
    """
    if isinstance(exc, OSError | sa_exc.TimeoutError):
        return True
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, sqlite3.Error):
        # SQLite reports a missing table as an OperationalError too: only these mean "not now".
        return any(word in str(exc.orig).lower() for word in SQLITE_UNAVAILABLE)
    if isinstance(exc, DBAPIError):
        return (
            exc.connection_invalidated
            or exc.statement is None
            or isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)
        )
    return False


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if not database_unavailable(exc):
        return await _unexpected(request, exc)
    log.warning("database_unavailable", error_type=type(exc).__name__)
    return JSONResponse(
        {"detail": "The database is unavailable; retry the request"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return JSONResponse({"success": False, "detail": "internal server error"}, status_code=500)


def _jsonable(value: Any) -> Any:
    """The echoed `input` of a validation error as strict JSON: NaN/Infinity (which the request parser
    accepts) and non-JSON objects become their text, instead of failing the 422 into a 500."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return sendable(value)  # the input echoed back may hold the very surrogate that was refused
    if value is None or isinstance(value, int | float):
        return value
    return str(value)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        error = dict(error)
        # Exceptions inside `ctx` are not JSON; their text is what a client needs.
        if "ctx" in error:
            error["ctx"] = {k: sendable(str(v)) for k, v in error["ctx"].items()}
        if "loc" in error:
            error["loc"] = [sendable(part) if isinstance(part, str) else part for part in error["loc"]]
        if "msg" in error:
            error["msg"] = sendable(error["msg"])
        if "input" in error:
            error["input"] = _jsonable(error["input"])
        errors.append(error)
    return JSONResponse({"detail": errors}, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(PayloadTooLarge, _payload_too_large)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for kind in (DBAPIError, OSError, sa_exc.TimeoutError):
        app.add_exception_handler(kind, _database_error)
    app.add_exception_handler(Exception, _unexpected)
