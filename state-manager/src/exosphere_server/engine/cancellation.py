"""Cancelling a run, by hand or when its deadline passes: every state of it that has not ended becomes
CANCELLED, in one transaction, and nothing new starts in it afterwards. Its child runs (child graphs)
are cancelled with it, and theirs, each recording its parent's cancel as its reason.

Nothing else has to check for a cancel: a cancelled state is neither claimable (not CREATED) nor held
(not QUEUED), so every report on it is refused (`transitions._check_held`) before anything of it is
applied, and no completion can add children to the run.

Example::

    cancelled = await cancel_run(ctx, "demo", run_id, reason="wrong input")
    cancelled.cancelled_states  # 12; a second call answers the same
"""

from __future__ import annotations

from exospherehost.statuses import StateStatus

from exosphere_server.clock import now_ms
from exosphere_server.engine import metrics
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.errors import Conflict
from exosphere_server.engine.run_counts import run_in
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import RunCancellationRecord, StateRecord

DEADLINE_EXCEEDED = "deadline exceeded"
BUDGET_EXCEEDED = "budget exceeded"
MAX_REASON_CHARS = 2000


def cancelled_error(reason: str | None) -> str:
    """The error a cancelled state carries, which also answers a runtime that reports on it later."""
    return "Run cancelled" + (f": {reason}" if reason else "")


async def cancel_run(ctx: EngineContext, namespace: str, run_id: str, reason: str | None) -> RunCancellationRecord:
    """Cancel a pending run; a run cancelled already answers as the first time; a finished run is a 409."""
    async with ctx.storage.transaction() as tx:
        await run_in(tx, namespace, run_id)
        found = await tx.get_run_cancellation(run_id)
        if found is not None and found.reason != BUDGET_EXCEEDED:
            return found
        # Over its budget, a run lets its executing states finish: a cancel by hand stops them too.
        cancelled, record = await _cancel_in(tx, run_id, reason)
        if record is None:
            status = (await tx.run_counts([run_id]))[run_id].status
            raise Conflict(f"Run {run_id} is {status}: only a run with pending states can be cancelled")
    for state in cancelled:
        metrics.record_completion(state, StateStatus.CANCELLED)
    return record


async def cancel_due_deadlines(ctx: EngineContext, limit: int = 100) -> int:
    """Cancel the runs whose deadline has passed (reason `deadline exceeded`); returns how many were due."""
    cancelled: list[StateRecord] = []
    async with ctx.storage.transaction() as tx:
        due = await tx.due_run_deadlines(now_ms(), limit)
        for run_id in due:
            # A run that finished before its deadline only loses its row.
            await tx.delete_run_deadline(run_id)
            if await tx.get_run_cancellation(run_id) is None:
                cancelled += (await _cancel_in(tx, run_id, DEADLINE_EXCEEDED))[0]
    for state in cancelled:
        metrics.record_completion(state, StateStatus.CANCELLED)
    return len(due)


async def cancel_waiting_in(tx: Tx, run_id: str, reason: str) -> list[StateRecord]:
    """Cancel the run's states that wait (CREATED, WAITING) inside the caller's transaction, and record the
    cancel when there were any (the first reason stays: a run whose last state took it over ended
    anyway, and is not CANCELLED); states executing go on, and their results are still applied.

    For a run over its budget: called by every transaction that ends an attempt of it, so the states an
    executing one makes later are cancelled by the transaction that makes them."""
    now = now_ms()
    states = await tx.lock_waiting_states(run_id)
    if states:
        await tx.move_states(
            states, StateStatus.CANCELLED, error=cancelled_error(reason), finished_at=now, lease_expires_at=None
        )
    if states and await tx.get_run_cancellation(run_id) is None:
        await tx.insert_run_cancellation(RunCancellationRecord(run_id, reason, len(states), now))
        await tx.delete_run_deadline(run_id)
    return states


async def _cancel_in(tx: Tx, run_id: str, reason: str | None) -> tuple[list[StateRecord], RunCancellationRecord | None]:
    """Move every unfinished state of the run to CANCELLED; no record when there was none (or when a
    concurrent cancel won, whose record is then returned)."""
    now = now_ms()
    cancelled: list[StateRecord] = []  # its own states
    of_children: list[StateRecord] = []
    # Locking waits for completions that hold some of these states; the children they committed
    # meanwhile are new rows, which the next pass (a new statement) sees. Once a pass finds nothing,
    # no completion of this run can add anything: each would find its state CANCELLED.
    while True:
        # Child runs first (child graphs), as a child's completion locks its states before its parent
        # state: the same order, so the two never wait on each other. A pass that cancels a state
        # AWAITING_CHILD comes back here for the child run that state may have started meanwhile.
        of_children += await _cancel_children(tx, run_id, reason)
        states = await tx.lock_cancellable_states(run_id)
        if not states:
            break
        await tx.move_states(
            states, StateStatus.CANCELLED, error=cancelled_error(reason), finished_at=now, lease_expires_at=None
        )
        cancelled += states
    if not cancelled:
        return [], await tx.get_run_cancellation(run_id)  # a concurrent cancel may have just committed
    record = RunCancellationRecord(run_id, reason, len(cancelled), now)
    if not await tx.insert_run_cancellation(record):
        found = await tx.get_run_cancellation(run_id)
        assert found is not None
        record = found
    await tx.delete_run_deadline(run_id)
    return cancelled + of_children, record


async def _cancel_children(tx: Tx, run_id: str, reason: str | None) -> list[StateRecord]:
    """Cancel the run's child runs that are still pending (and theirs), each with its own record."""
    cancelled: list[StateRecord] = []
    child_reason = f"parent run {run_id} cancelled" + (f": {reason}" if reason else "")
    children = await tx.child_runs_of_run(run_id)
    done = await tx.get_run_cancellations([child.run_id for child in children])
    for child in children:
        if child.run_id not in done:
            cancelled += (await _cancel_in(tx, child.run_id, child_reason[:MAX_REASON_CHARS]))[0]
    return cancelled
