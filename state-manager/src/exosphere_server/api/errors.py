"""One table from domain errors to status codes, and the handlers that keep every answer JSON."""

from __future__ import annotations

import math
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from exosphere_server.engine.errors import BadRequest, Conflict, EngineError, GraphTooLarge, NotFound

log = structlog.get_logger("exosphere.api")

STATUS_BY_ERROR: list[tuple[type[EngineError], int]] = [
    (NotFound, 404),
    (Conflict, 409),
    (BadRequest, 400),
    (GraphTooLarge, 422),
]


def status_code(exc: EngineError) -> int:
    return next((code for kind, code in STATUS_BY_ERROR if isinstance(exc, kind)), 400)


async def _engine_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, EngineError)
    return JSONResponse({"detail": exc.message}, status_code=status_code(exc))


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if exc.connection_invalidated:
        log.warning("database_connection_lost", error_type=type(exc.orig).__name__)
        return JSONResponse({"detail": "Database connection lost; retry the request"}, status_code=503)
    return await _unexpected(request, exc)


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
    if value is None or isinstance(value, str | int | float):
        return value
    return str(value)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for error in exc.errors():
        error = dict(error)
        # Exceptions inside `ctx` are not JSON; their text is what a client needs.
        if "ctx" in error:
            error["ctx"] = {k: str(v) for k, v in error["ctx"].items()}
        if "input" in error:
            error["input"] = _jsonable(error["input"])
        errors.append(error)
    return JSONResponse({"detail": errors}, status_code=422)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected)
