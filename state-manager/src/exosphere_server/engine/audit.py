"""The audit log: one entry per admin or operator action that succeeded, kept in storage.

Example::

    await record_action(ctx, principal, "trigger", namespace="etl", target="graph nightly, run 3f2a...")
    (await audit_entries(ctx, limit=10))[0].action   # 'trigger'
"""

from __future__ import annotations

from dataclasses import dataclass

from exosphere_server.clock import now_ms
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.keys import Principal
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import AuditRecord

MAX_TARGET_CHARS = 500  # a target names objects by id; anything longer is cut, not refused


@dataclass(frozen=True)
class AuditNote:
    """An entry to write in the audited action's own transaction (a trigger): it commits with the
    action, and the action costs one commit instead of two."""

    principal: Principal
    action: str
    namespace: str | None
    target: str


async def record_action(
    ctx: EngineContext, principal: Principal, action: str, namespace: str | None, target: str
) -> None:
    async with ctx.storage.transaction() as tx:
        await write_entry(tx, AuditNote(principal, action, namespace, target))


async def write_entry(tx: Tx, note: AuditNote, created: str | None = None) -> None:
    """Write `note` in `tx`, its target followed by what the action created (`run_id 3f2a...`)."""
    target = ", ".join(part for part in (note.target, created) if part)
    p = note.principal
    await tx.insert_audit_entry(
        now_ms(), p.key_id, p.name, p.role, note.action, note.namespace, target[:MAX_TARGET_CHARS]
    )


async def audit_entries(ctx: EngineContext, limit: int, before: int | None = None) -> list[AuditRecord]:
    """The newest `limit` entries, or the newest older than entry id `before`."""
    async with ctx.storage.reader() as tx:
        return await tx.audit_entries(limit, before)
