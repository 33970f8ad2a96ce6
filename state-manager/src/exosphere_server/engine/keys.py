"""Scoped API keys: who a request's key is, created, listed and revoked through storage.

A key has a role (`admin`, `operator`, `runtime`, `viewer`) and works in one namespace or all of them.
Its secret is `exo_` and 256 random bits; storage keeps only the SHA-256 of it, so a leaked database
holds no usable key. Every request looks its key up by that digest (one primary-key-sized index
probe): a revocation on one replica is seen by every other one at the next request, with no cache
to invalidate. `STATE_MANAGER_SECRET` stays a key of its own, the admin `root`, never stored.

Example::

    created, secret = await create_key(ctx, "nightly-runtime", "runtime", namespace="etl")
    (await key_for_secret(ctx, secret)).role        # 'runtime'
    await revoke_key(ctx, created.id)
    (await key_for_secret(ctx, secret)).revoked_at  # set: the key is refused from now on, everywhere
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from exosphere_server.clock import now_ms
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.errors import NotFound
from exosphere_server.storage.records import ApiKeyRecord

ROLES = ("admin", "operator", "runtime", "viewer")
SECRET_PREFIX = "exo_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: a stored key, the root key (`STATE_MANAGER_SECRET`) or anyone on a keyless local
    server. `namespace` None: every namespace."""

    key_id: str
    name: str
    role: str
    namespace: str | None = None

    def may_act_in(self, namespace: str) -> bool:
        return self.namespace is None or self.namespace == namespace


ROOT = Principal("root", "STATE_MANAGER_SECRET", "admin")
LOCAL = Principal("local", "local server without an API key", "admin")


def principal_of(record: ApiKeyRecord) -> Principal:
    return Principal(record.id, record.name, record.role, record.namespace)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_key(ctx: EngineContext, name: str, role: str, namespace: str | None) -> tuple[ApiKeyRecord, str]:
    """A new key and its secret; the secret is returned this once and stored only as a digest."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    record = ApiKeyRecord(
        id="key_" + secrets.token_hex(8),
        name=name,
        role=role,
        namespace=namespace,
        secret_sha256=secret_digest(secret),
        created_at=now_ms(),
    )
    async with ctx.storage.transaction() as tx:
        await tx.insert_api_key(record)
    return record, secret


async def list_keys(ctx: EngineContext) -> list[ApiKeyRecord]:
    async with ctx.storage.reader() as tx:
        return await tx.list_api_keys()


async def revoke_key(ctx: EngineContext, key_id: str) -> ApiKeyRecord:
    """Revoke a key (again: harmless); raises `NotFound` for an unknown id."""
    async with ctx.storage.transaction() as tx:
        await tx.revoke_api_key(key_id, now_ms())
        record = await tx.get_api_key(key_id)
    if record is None:
        raise NotFound(f"No API key with id {key_id!r}: `exosphere key list` shows the ids")
    return record


async def key_for_secret(ctx: EngineContext, secret: str) -> ApiKeyRecord | None:
    """The stored key with this secret, revoked or not; None for a secret that was never issued."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    async with ctx.storage.reader() as tx:
        return await tx.api_key_by_secret(secret_digest(secret))


async def key_by_id(ctx: EngineContext, key_id: str) -> ApiKeyRecord | None:
    async with ctx.storage.reader() as tx:
        return await tx.get_api_key(key_id)
