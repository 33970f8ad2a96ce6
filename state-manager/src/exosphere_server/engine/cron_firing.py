"""Firing cron triggers: once per occurrence across replicas, UTC, no catch-up burst (D17–D20)."""

from __future__ import annotations

from datetime import datetime

import structlog

from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.cron import next_occurrence
from exosphere_server.engine.errors import EngineError
from exosphere_server.engine.runs import start_run

log = structlog.get_logger("exosphere.cron")
LATE_GRACE_MS = 60_000  # an occurrence later than this counts as missed (server was down)


async def fire_due(ctx: EngineContext, now: datetime) -> int:
    """Fire every schedule whose time has come; each firing is one transaction. Returns how many fired."""
    now_ms = int(now.timestamp() * 1000)
    fired = 0
    while True:
        async with ctx.storage.transaction() as tx:
            due = await tx.due_cron_schedules(now_ms, limit=1)
            if not due:
                return fired
            schedule = due[0]
            # Advancing to the first occurrence after *now* fires a backlog once, not once per missed tick.
            next_at = int(next_occurrence(schedule.expression, now).timestamp() * 1000)
            if not await tx.advance_cron_schedule(schedule, next_at):
                continue  # another replica fired this occurrence
            missed = now_ms - schedule.next_fire_at > LATE_GRACE_MS
            if missed and ctx.cron_catch_up == "none":
                log.info("cron_occurrence_skipped", graph=schedule.graph_name, expression=schedule.expression)
                continue
            value = schedule.trigger.get("value", {})
            try:
                run_id = await start_run(
                    tx,
                    ctx,
                    schedule.namespace,
                    schedule.graph_name,
                    inputs=value.get("inputs") or {},
                    store=value.get("store") or {},
                    start_delay_ms=0,
                    defaults_satisfy_required=True,
                )
            except EngineError as exc:
                log.warning(
                    "cron_trigger_failed",
                    namespace=schedule.namespace,
                    graph=schedule.graph_name,
                    expression=schedule.expression,
                    error=exc.message,
                )
                continue
            fired += 1
            log.info(
                "cron_triggered",
                namespace=schedule.namespace,
                graph=schedule.graph_name,
                expression=schedule.expression,
                run_id=run_id,
                missed=missed,
            )
