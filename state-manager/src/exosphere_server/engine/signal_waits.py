"""Waits for signals (human in the loop): a node raises `WaitForSignal`, its state waits in WAITING
without a runtime or a lease, and a signal sent to its run makes it run again with the payload.

A signal is kept for its run under its name (the last one sent wins): it wakes every state of the run
waiting for that name when it arrives, and a wait for that name that starts later is answered with it
at once. A wait with a time-out that passes fails its attempt through the graph's retry policy; a
cancelled run's waits end with it (`cancellation`, as every unfinished state does).

Example::

    await wait_for_signal(ctx, "demo", state_id, "approval", timeout_ms=3_600_000, lease_id=lease)
    await send_signal(ctx, "demo", run_id, "approval", {"approved": "yes"})  # 1: the state runs again
"""

from __future__ import annotations

from exospherehost.statuses import StateStatus

from exosphere_server.clock import now_ms
from exosphere_server.engine import metrics
from exosphere_server.engine.budgets import enforce_budgets
from exosphere_server.engine.errors import Conflict
from exosphere_server.engine.next_states import Finished, evaluate_unites_of
from exosphere_server.engine.run_counts import run_in
from exosphere_server.engine.transitions import _check_held, fail_state, load_state, run_and_graph
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import RunSignalRecord, StateRecord

from .context import EngineContext

_S = StateStatus


def timed_out_error(name: str) -> str:
    """The error of an attempt whose wait for signal `name` timed out."""
    return f"Timed out waiting for signal {name}"


async def wait_for_signal(
    ctx: EngineContext, namespace: str, state_id: str, name: str, timeout_ms: int | None, lease_id: str | None
) -> tuple[StateStatus, int | None]:
    """Put a held state in WAITING for signal `name`; when the run has that signal already, the state
    goes back to CREATED with it instead. Returns the status and when the wait times out."""
    async with ctx.storage.transaction() as tx:
        state = await load_state(tx, namespace, state_id)
        if (
            state.status == _S.WAITING
            and state.waiting_for == name
            and lease_id is not None
            and lease_id == state.lease_id
        ):
            return _S.WAITING, state.wait_timeout_at  # the same report again (a retry after a lost answer)
        _check_held(state, lease_id)
        sent = await tx.get_run_signal(state.run_id, name)
        status, timeout_at = _S.CREATED, None
        if sent is not None:
            await _wake(tx, [state], sent.payload)
        else:
            status = _S.WAITING
            timeout_at = now_ms() + timeout_ms if timeout_ms is not None else None
            await tx.move_states(
                [state], _S.WAITING, waiting_for=name, wait_timeout_at=timeout_at, lease_expires_at=None
            )
            if timeout_at is not None:
                tx.schedule_changed = True  # the scheduler must wake for this time-out
        # A run over its budget: the state waits no more (nor runs again).
        cancelled = await enforce_budgets(tx, [(await run_and_graph(tx, ctx, state.run_id))[0]])
    metrics.record_cancelled(cancelled)
    if status == _S.WAITING:
        metrics.record_completion(state, _S.WAITING)  # the runtime's attempt ended here
    return status, timeout_at


async def send_signal(ctx: EngineContext, namespace: str, run_id: str, name: str, payload: dict[str, str]) -> int:
    """Keep the signal for the run and wake every state of it waiting for `name`; returns how many woke.

    A run that has ended (or was cancelled) takes no signal: a `409` naming its status.
    """
    async with ctx.storage.transaction() as tx:
        await run_in(tx, namespace, run_id)
        if await tx.get_run_cancellation(run_id) is not None:
            raise Conflict(f"Run {run_id} is CANCELLED: it waits for no signal any more")
        counts = (await tx.run_counts([run_id]))[run_id]
        if counts.pending == 0:
            status = counts.status
            raise Conflict(f"Run {run_id} is {status}: it has ended, so no state of it can receive signal {name}")
        await tx.put_run_signal(RunSignalRecord(run_id, name, payload, now_ms()))
        waiting = await tx.waiting_states(run_id, name)
        await _wake(tx, waiting, payload)
    return len(waiting)


async def _wake(tx: Tx, states: list[StateRecord], payload: dict[str, str]) -> None:
    """Back to CREATED, claimable now, with the payload for the next claim; no longer waiting."""
    for state in states:
        await tx.requeue_state(
            state,
            now_ms(),
            signal=payload,
            waiting_for=None,
            wait_timeout_at=None,
            lease_id=None,
            lease_expires_at=None,
            started_at=None,
        )


async def expire_waits(ctx: EngineContext, limit: int = 200) -> int:
    """Fail, through the retry policy, every attempt whose wait timed out. Returns how many."""
    async with ctx.storage.transaction() as tx:
        due = await tx.timed_out_waits(now_ms(), limit)
        finished: list[Finished] = []
        for state in due:
            name = state.waiting_for or ""
            run, graph = await run_and_graph(tx, ctx, state.run_id)
            await tx.update_states([state], waiting_for=None, wait_timeout_at=None)
            await fail_state(tx, graph, run, state, timed_out_error(name), finished=finished)
        await evaluate_unites_of(finished, tx)
    for state in due:
        metrics.record_completion(state, state.status)
    return len(due)
