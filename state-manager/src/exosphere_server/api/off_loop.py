"""Request bodies parsed, and answers encoded, in a worker thread: for payloads that can be megabytes.

FastAPI parses a declared body model on the event loop. A graph of 100,000 nodes is about 15 MB of
JSON and a second or more of parsing and validation, during which no other request (not even
`/health`) would be answered. Routes that take such bodies read the raw bytes instead, hand them to
:func:`parse_body` through `asyncio.to_thread`, and keep their model in the OpenAPI document with
:func:`documented_body` and :func:`install_body_schemas`.

Example::

    @router.put("/graph/{name}", openapi_extra=documented_body(UpsertGraphRequest))
    async def upsert(request: Request) -> Response:
        body = await asyncio.to_thread(parse_body, await request.body(), UpsertGraphRequest)
        return await json_answer({"ok": True})
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.responses import Response

from exosphere_server.api.json_response import render_json
from exosphere_server.engine.storable import unstorable_at

M = TypeVar("M", bound=BaseModel)


def _keep(value: dict[str, Any]) -> dict[str, Any]:
    return value


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or the 422 FastAPI gives for a body that is not JSON."""
    if not raw:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        # A Python hook per object is slower than the bare C parser, but lets the event loop's
        # thread take the GIL between objects instead of waiting out one long C call.
        return json.loads(raw, object_hook=_keep)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", position),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": str(exc)},
                }
            ]
        ) from exc


def validate_body(data: Any, model: type[M]) -> M:
    """`model` from parsed JSON, with FastAPI's 422 (locations under `body`) when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from exc


def validate_in_chunks(data: Any, model: type[M], field: str, item: type[BaseModel], chunk: int = 2000) -> M:
    """`validate_body`, but the long list `field` is validated `chunk` items at a time.

    One validation call of 100,000 graph nodes holds the GIL for hundreds of milliseconds, and the
    event loop's thread with it; between chunks the loop gets its turn. Errors keep their places
    (`body.nodes.12345.identifier`), and the rest of the body is validated as `model` says.
    """
    items = data.get(field) if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) <= chunk:
        return validate_body(data, model)
    problem = unstorable_at(items, field)  # what the model's own check would say of the list
    if problem is not None:
        raise RequestValidationError([{"type": "value_error", "loc": ("body",), "msg": problem, "input": None}])
    head = validate_body({**data, field: []}, model)
    adapter = TypeAdapter(list[item])  # type: ignore[valid-type]
    validated: list[Any] = []
    for start in range(0, len(items), chunk):
        try:
            validated += adapter.validate_python(items[start : start + chunk])
        except ValidationError as exc:
            errors = [
                {**error, "loc": ("body", field, start + int(error["loc"][0]), *error["loc"][1:])}
                for error in exc.errors(include_url=False)
            ]
            raise RequestValidationError(errors) from exc
    return head.model_copy(update={field: validated})


def documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route that reads its body itself: the body is still `model`, required."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install_body_schemas(app: FastAPI, *models: type[BaseModel]) -> None:
    """Add the schemas that `documented_body` refers to, which FastAPI only collects from declared bodies."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in schema.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components.setdefault(model.__name__, schema)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def json_answer(content: Any, status_code: int = 200) -> Response:
    """A JSON response encoded in a worker thread (what `JSONResponse` does on the loop)."""
    body = await asyncio.to_thread(render_json, content)
    return Response(body, status_code=status_code, media_type="application/json")
