"""Revoked dashboard sessions, shared by every replica through storage.

A logout records the session's token id until the token would have expired anyway (expired tokens are
refused by the token check itself, so their rows are purged at the next logout). Each check reads the
table by primary key, so a logout on one replica takes effect on the others at once; only the answer
"revoked", which never changes back, is cached.

Example::

    await revoke_session(ctx, token_id, expires_at)
    await session_is_revoked(ctx, token_id)   # True on every replica from now on
"""

from __future__ import annotations

from exosphere_server.clock import now_ms
from exosphere_server.engine.context import EngineContext


async def revoke_session(ctx: EngineContext, token_id: str, expires_at: int) -> None:
    async with ctx.storage.transaction() as tx:
        await tx.delete_expired_session_revocations(now_ms())
        await tx.revoke_session(token_id, expires_at)
    ctx.revoked_sessions.add(token_id)


async def session_is_revoked(ctx: EngineContext, token_id: str) -> bool:
    if token_id in ctx.revoked_sessions:
        return True
    async with ctx.storage.reader() as tx:
        revoked = await tx.session_is_revoked(token_id)
    if revoked:
        ctx.revoked_sessions.add(token_id)
    return revoked
