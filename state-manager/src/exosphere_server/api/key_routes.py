"""Scoped API keys and the audit log (admin only, `api/access.py`): additive `/v0` endpoints.

Example::

    curl -X POST $URL/v0/keys -H "x-api-key: $ADMIN" -d '{"name": "ci", "role": "operator", "namespace": "etl"}'
    curl $URL/v0/audit?limit=20 -H "x-api-key: $ADMIN"
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from exospherehost.contract import (
    ApiKeyInfo,
    AuditLogResponse,
    CreatedKeyResponse,
    ListKeysResponse,
)
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from exosphere_server.api.deps import engine_context
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.schemas import CreateKeyRequest
from exosphere_server.engine import audit, keys
from exosphere_server.storage.records import ApiKeyRecord

router = APIRouter()
MAX_AUDIT_PAGE = 1000


def key_view(record: ApiKeyRecord) -> dict[str, Any]:
    """Everything but the digest of the secret."""
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "namespace": record.namespace,
        "created_at": record.created_at,
        "revoked_at": record.revoked_at,
    }


@router.post("/keys", response_model=CreatedKeyResponse)
async def create_key(body: CreateKeyRequest, request: Request) -> Response:
    """A new key; its secret (`key`) is in this answer only."""
    record, secret = await keys.create_key(engine_context(request), body.name, body.role, body.namespace)
    return SafeJSONResponse({**key_view(record), "key": secret})


@router.get("/keys", response_model=ListKeysResponse)
async def list_keys(request: Request) -> Response:
    return SafeJSONResponse({"keys": [key_view(r) for r in await keys.list_keys(engine_context(request))]})


@router.delete("/keys/{key_id}", response_model=ApiKeyInfo)
async def revoke_key(key_id: str, request: Request) -> Response:
    """The key is refused from the next request on, on every replica; revoking it again changes nothing."""
    return SafeJSONResponse(key_view(await keys.revoke_key(engine_context(request), key_id)))


@router.get("/audit", response_model=AuditLogResponse)
async def audit_log(
    request: Request,
    limit: int = Query(default=100, ge=1, le=MAX_AUDIT_PAGE),
    before: int | None = Query(
        default=None, ge=1, le=2**63 - 1, description="Only entries with a smaller id (the next page)"
    ),
) -> Response:
    entries = await audit.audit_entries(engine_context(request), limit, before)
    return SafeJSONResponse({"entries": [asdict(entry) for entry in entries]})
