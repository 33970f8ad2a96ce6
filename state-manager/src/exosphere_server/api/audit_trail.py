"""Writes the audit log entry of each admin or operator action that succeeded (`api/access.py` marks them).

The entry is written before the answer leaves, so a client that reads `GET /v0/audit` after its call
finds it there. The answer is held back for that (audited answers are small: a run id, a state id, a
key). When the answer names what the call created (`run_id`, or `id`), the entry names it too. If
the database refuses the entry the action has happened all the same: the answer is sent and the entry
goes to the error log in full, so it is not lost.

Example: `POST .../graph/nightly/trigger` by operator key `ci` records
`{"action": "trigger", "key_name": "ci", "namespace": "etl", "target": "graph_name nightly, run_id 3f2a..."}`.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exosphere_server.api.access import AUDIT_SCOPE_KEY, PendingAudit
from exosphere_server.engine.audit import record_action
from exosphere_server.engine.context import EngineContext

log = structlog.get_logger("exosphere.audit")
CREATED_KEYS = ("run_id", "id")  # what an answer calls the object the call created


def created_object(body: bytes) -> str | None:
    try:
        answer: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    return next((f"{key} {answer[key]}" for key in CREATED_KEYS if isinstance(answer.get(key), str)), None)


class AuditTrailMiddleware:
    def __init__(self, app: ASGIApp, ctx: EngineContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def send_after_audit(message: Message) -> None:
            pending: PendingAudit | None = scope.get(AUDIT_SCOPE_KEY)
            if pending is None or (not held and not 200 <= int(message.get("status", 0)) < 300):
                await send(message)
                return
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
                await self._record(pending, created_object(body))
                scope.pop(AUDIT_SCOPE_KEY, None)
                for kept in held:
                    await send(kept)

        await self.app(scope, receive, send_after_audit)

    async def _record(self, pending: PendingAudit, created: str | None) -> None:
        if created and created.split(" ", 1)[1] in pending.target:
            created = None  # the path named it already (a revoked key)
        target = ", ".join(part for part in (pending.target, created) if part)
        try:
            await record_action(self.ctx, pending.principal, pending.action, pending.namespace, target)
        except Exception as exc:  # the action is done: answer it, keep the entry in the log instead
            log.error(
                "audit_entry_not_stored",
                error_type=type(exc).__name__,
                key_id=pending.principal.key_id,
                key_name=pending.principal.name,
                role=pending.principal.role,
                action=pending.action,
                namespace=pending.namespace,
                target=target,
            )
