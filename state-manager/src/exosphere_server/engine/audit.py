"""The audit log: one entry per admin or operator action that succeeded, kept in storage.

Example::

    await record_action(ctx, principal, "trigger", namespace="etl", target="graph nightly, run 3f2a...")
    (await audit_entries(ctx, limit=10))[0].action   # 'trigger'
"""

from __future__ import annotations

from exosphere_server.clock import now_ms
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.keys import Principal
from exosphere_server.storage.records import AuditRecord

MAX_TARGET_CHARS = 500  # a target names objects by id; anything longer is cut, not refused


async def record_action(
    ctx: EngineContext, principal: Principal, action: str, namespace: str | None, target: str
) -> None:
    async with ctx.storage.transaction() as tx:
        await tx.insert_audit_entry(
            now_ms(),
            principal.key_id,
            principal.name,
            principal.role,
            action,
            namespace,
            target[:MAX_TARGET_CHARS],
        )


async def audit_entries(ctx: EngineContext, limit: int, before: int | None = None) -> list[AuditRecord]:
    """The newest `limit` entries, or the newest older than entry id `before`."""
    async with ctx.storage.reader() as tx:
        return await tx.audit_entries(limit, before)
