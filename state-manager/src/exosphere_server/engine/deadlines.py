"""When the scheduler must act next, and waking claimers of delayed states whose time has come.

Both read indexes only (never a table scan): the ready index by `enqueue_after`, the lease index by
`lease_expires_at`, the cron index by `next_fire_at`, the run deadline index by `deadline_at`.
"""

from __future__ import annotations

from exosphere_server.engine.context import EngineContext


async def wake_states_due_between(ctx: EngineContext, start_ms: int, end_ms: int) -> None:
    """Wake the claimers of delayed states that became ready in (`start_ms`, `end_ms`]."""
    async with ctx.storage.reader() as tx:
        due = await tx.ready_keys_due_between(start_ms, end_ms)
    if due:
        ctx.wakeups.notify(due)


async def next_deadline(ctx: EngineContext, now_ms: int) -> int | None:
    """The earliest of: a delayed state becoming ready after `now_ms`, a lease running out (or a node's
    time-out, which caps its lease), a cron occurrence, a run's deadline, a wait's time-out; None when there is none."""
    async with ctx.storage.reader() as tx:
        deadlines = [
            await tx.next_due_after(now_ms),
            await tx.next_lease_expiry(),
            await tx.next_cron_at(),
            await tx.next_run_deadline(),
            await tx.next_wait_timeout(),
        ]
    return min((d for d in deadlines if d is not None), default=None)
