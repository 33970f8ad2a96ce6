"""Named limits of a namespace (additive, docs/flow-control.md): concurrency, requests and tokens per minute."""

from __future__ import annotations

from typing import Annotated, Any

from exospherehost.contract import DeleteLimitResponse, LimitRequest, LimitResponse, ListLimitsResponse
from exospherehost.models import LIMIT_NAME_PATTERN
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from exosphere_server.api.deps import engine_context
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.engine import limits
from exosphere_server.storage.records import LimitRecord

router = APIRouter()
LIMIT = "/namespace/{namespace_name}/limits/{name}"
Name = Annotated[str, Path(pattern=LIMIT_NAME_PATTERN, description="The limit's name, e.g. openai")]


def _view(record: LimitRecord) -> dict[str, Any]:
    return {
        "namespace": record.namespace,
        "name": record.name,
        "concurrency": record.concurrency,
        "requests_per_minute": record.requests_per_minute,
        "tokens_per_minute": record.tokens_per_minute,
        "paused_until": record.paused_until or None,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


@router.put(LIMIT, response_model=LimitResponse)
async def set_limit(namespace_name: str, name: Name, body: LimitRequest, request: Request) -> Response:
    """Create or replace limit `name`: the budgets given replace all three (a budget left out is none)."""
    record = await limits.set_limit(engine_context(request), namespace_name, name, body)
    return SafeJSONResponse(_view(record))


@router.get(LIMIT, response_model=LimitResponse)
async def get_limit(namespace_name: str, name: Name, request: Request) -> Response:
    return SafeJSONResponse(_view(await limits.get_limit(engine_context(request), namespace_name, name)))


@router.get("/namespace/{namespace_name}/limits", response_model=ListLimitsResponse)
async def list_limits(namespace_name: str, request: Request) -> Response:
    found = await limits.list_limits(engine_context(request), namespace_name)
    return SafeJSONResponse({"namespace": namespace_name, "limits": [_view(r) for r in found]})


@router.delete(LIMIT, response_model=DeleteLimitResponse)
async def delete_limit(namespace_name: str, name: Name, request: Request) -> Response:
    """Remove limit `name`; states of nodes that use it wait until it is defined again."""
    await limits.delete_limit(engine_context(request), namespace_name, name)
    return SafeJSONResponse({"namespace": namespace_name, "name": name, "deleted": True})
