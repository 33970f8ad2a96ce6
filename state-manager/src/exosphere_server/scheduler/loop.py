"""The one background loop of a replica: lease expiry (and node time-outs), run deadlines, time-outs of
waits for signals, delayed wake-ups, cron firing, retention.

It sleeps until the earliest deadline it knows of (read from indexes, never a table scan) or until
a transaction reports a schedule change (here or, on PostgreSQL, on another replica).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog

from exosphere_server.clock import now_ms
from exosphere_server.engine import cancellation, cron_firing, deadlines, runs, signal_waits
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.transitions import expire_leases

log = structlog.get_logger("exosphere.scheduler")
MAX_SLEEP_MS = 30_000  # a safety net only: deadlines and pokes normally wake the loop
RETENTION_EVERY_MS = 3_600_000
TRIGGER_KEY_SWEEP_EVERY_MS = 60_000
ORPHAN_PAYLOAD_SWEEP_EVERY_MS = 3_600_000
LOOK_BACK_MS = 5_000


class Scheduler:
    def __init__(self, ctx: EngineContext, run_retention_days: int = 0) -> None:
        self.ctx = ctx
        self.retention_ms = run_retention_days * 86_400_000
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._checked_until = now_ms()
        self._next_retention = 0
        self._next_payload_sweep = 0
        self._next_key_sweep = 0
        self._wake_at = 0

    def note_deadline(self, deadline_ms: int) -> None:
        """A lease was granted or extended: wake earlier if it ends before the planned wake-up."""
        if deadline_ms < self._wake_at:
            self._poke.set()

    def poke(self) -> None:
        """Something changed the deadlines (a delayed state, a new lease, a schedule): look again."""
        self._poke.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="exosphere-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            # Cleared before the tick, so a poke that arrives during it is not lost.
            self._poke.clear()
            self._wake_at = 0
            try:
                sleep_ms = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("scheduler_tick_failed", error=str(exc))
                sleep_ms = 500
            self._wake_at = now_ms() + sleep_ms
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), sleep_ms / 1000)

    async def tick(self) -> int:
        """Do everything that is due; return how long to sleep (ms) before the next deadline."""
        now = now_ms()
        # Each duty on its own: a failure in one (logged) must not hold up the others.
        await self._guarded("lease_expiry", self._expire_all)
        await self._guarded("run_deadlines", self._cancel_past_deadlines)
        await self._guarded("signal_waits", self._expire_waits)
        await self._guarded("cron", lambda: cron_firing.fire_due(self.ctx, datetime.now(UTC)))
        # Looking back a little also catches delayed states whose transaction committed late.
        await deadlines.wake_states_due_between(self.ctx, self._checked_until - LOOK_BACK_MS, now)
        self._checked_until = now
        if now >= self._next_key_sweep:
            self._next_key_sweep = now + TRIGGER_KEY_SWEEP_EVERY_MS
            await self._guarded("trigger_key_sweep", lambda: runs.forget_expired_trigger_keys(self.ctx, now))
        if now >= self._next_payload_sweep:
            # Hourly: it lists the payload store (a directory, or an S3 prefix), which costs in proportion to it.
            self._next_payload_sweep = now + ORPHAN_PAYLOAD_SWEEP_EVERY_MS
            await self._guarded("orphan_payload_sweep", lambda: runs.sweep_orphan_payloads(self.ctx, now))
        if self.retention_ms and now >= self._next_retention:
            await self._apply_retention(now)
        next_deadline = await deadlines.next_deadline(self.ctx, now)
        if next_deadline is None:
            next_deadline = now + MAX_SLEEP_MS
        return max(1, min(next_deadline - now_ms(), MAX_SLEEP_MS))

    async def _expire_all(self) -> None:
        while await expire_leases(self.ctx) > 0:
            pass

    async def _expire_waits(self) -> None:
        while await signal_waits.expire_waits(self.ctx) > 0:
            pass

    async def _cancel_past_deadlines(self) -> None:
        while await cancellation.cancel_due_deadlines(self.ctx) > 0:
            pass

    async def _guarded(self, duty: str, work: Callable[[], Awaitable[object]]) -> None:
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("scheduler_duty_failed", duty=duty, error=str(exc))

    async def _apply_retention(self, now: int) -> None:
        self._next_retention = now + RETENTION_EVERY_MS
        deleted = await runs.delete_finished_runs(self.ctx, now - self.retention_ms, limit=1000)
        if deleted:
            log.info("runs_deleted_by_retention", count=deleted)
