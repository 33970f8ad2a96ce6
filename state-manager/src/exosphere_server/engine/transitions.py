"""Every state transition, each one database transaction (DESIGN §2).

Claims are leases; completions carry the lease and are idempotent; a failure goes through the
pinned graph's retry policy; anything that ends a state re-checks the unites waiting on it.
"""

from __future__ import annotations

import asyncio
import secrets as _random
from collections.abc import Awaitable, Callable, Sequence
from copy import copy as shallow_copy
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from exospherehost.statuses import AFTER_ERRORED, AFTER_EXECUTED, RETRYABLE_BY_HAND, StateStatus

from exosphere_server.clock import now_ms
from exosphere_server.engine import metrics
from exosphere_server.engine.budgets import enforce_budgets
from exosphere_server.engine.context import EngineContext, PinnedGraph
from exosphere_server.engine.errors import BadRequest, Conflict, EngineError, LeaseLost, NotFound, StateCancelled
from exosphere_server.engine.fingerprint import unite_fingerprint
from exosphere_server.engine.limits import correct_by_usage
from exosphere_server.engine.next_states import (
    Finished,
    NextStateError,
    create_children,
    evaluate_unites,
    evaluate_unites_of,
    initial_status,
)
from exosphere_server.engine.pacing import Pacer
from exosphere_server.engine.retry_policy import retry_delay_ms
from exosphere_server.engine.secret_box import SecretUnreadable
from exosphere_server.engine.serving import note_served
from exosphere_server.engine.storable import unstorable_at
from exosphere_server.random_ids import random_hex
from exosphere_server.storage import payloads
from exosphere_server.storage.base import Claimant, Tx, new_id
from exosphere_server.storage.records import RunRecord, StateRecord

_S = StateStatus


async def load_state(tx: Tx, namespace: str, state_id: str, *, for_update: bool = True) -> StateRecord:
    """The state, locked for this transaction; a state of another namespace does not exist here."""
    state = await tx.get_state(state_id, for_update=for_update)
    if state is None or state.namespace != namespace:
        raise NotFound("State not found")
    return state


async def run_and_graph(tx: Tx, ctx: EngineContext, run_id: str) -> tuple[RunRecord, PinnedGraph]:
    cached = ctx.runs.get(run_id)
    if cached is not None:
        return cached
    run = await tx.get_run(run_id)
    if run is None:
        raise NotFound(f"Run {run_id} not found")
    pinned = ctx.pinned.cached(run.namespace, run.graph_name, run.graph_version)
    if pinned is None:
        version = await tx.get_graph_version(run.namespace, run.graph_name, run.graph_version)
        if version is None:
            raise NotFound(f"Graph template {run.graph_name} version {run.graph_version} not found")
        pinned = await ctx.pinned.get(version)
    ctx.runs.put(run, pinned)
    return run, pinned


def _check_held(state: StateRecord, lease_id: str | None, *, not_held: str = "State is not queued") -> None:
    """Refuse a report on a state the caller does not hold: a lost lease or a cancelled run is 409, a
    wrong status 400."""
    if state.status == _S.QUEUED and (lease_id is None or lease_id == state.lease_id):
        return
    _check_not_cancelled(state)
    if state.lease_expired or (lease_id is not None and lease_id != state.lease_id):
        raise LeaseLost(
            f"Lease lost: state {state.id} is no longer held under this lease "
            f"(status {state.status}{', lease expired' if state.lease_expired else ''})"
        )
    raise BadRequest(not_held)


def _check_not_cancelled(state: StateRecord) -> None:
    if state.status == _S.CANCELLED:
        raise StateCancelled(f"State {state.id} is CANCELLED ({state.error}): stop it; nothing sent for it is applied")


def timeout_error(timeout_ms: int) -> str:
    """The error of an attempt that ran past its node's `timeout_seconds`."""
    return f"Timed out after {timeout_ms / 1000:g} s"


def _timed_out(state: StateRecord) -> bool:
    """Whether the lease ran out at the attempt's time-out rather than for want of a heartbeat."""
    return (
        state.timeout_ms is not None
        and state.started_at is not None
        and state.lease_expires_at is not None
        and state.lease_expires_at >= state.started_at + state.timeout_ms
    )


# -- claims ------------------------------------------------------------------------------------


async def claim(
    ctx: EngineContext,
    namespace: str,
    node_names: Sequence[str],
    batch_size: int,
    *,
    wait_ms: int = 0,
    lease_ms: int | None = None,
    gone: Callable[[], Awaitable[bool]] | None = None,
    claimant: Claimant = (None, None),
) -> list[StateRecord]:
    """Claim up to `batch_size` ready states; with `wait_ms`, wait for work instead of answering empty.

    `claimant` (the runtime's name and instance) is recorded on each claimed state: where it runs."""
    if not node_names or batch_size <= 0:
        return []
    lease = lease_ms or ctx.default_lease_ms
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms / 1000
    keys = [(namespace, name) for name in dict.fromkeys(node_names)]
    woken = False  # woken for ready work: leaving without looking for it must hand the wake-up on
    await note_served(ctx, namespace, node_names)
    while True:
        with ctx.wakeups.watch(keys, batch_size) as waiter:
            looked = False
            try:
                if gone is not None and await gone():
                    return []
                claimed, room_at = await _claim_both(ctx, namespace, node_names, batch_size, lease, claimant)
                looked = True
            finally:
                if woken and not looked:
                    ctx.wakeups.pass_on(keys, instead_of=waiter)
            woken = False
            if claimed:
                return await _hand_out(ctx, namespace, claimed)
            remaining = deadline - loop.time()
            if remaining <= 0 or ctx.wakeups.closing:
                return []
            if room_at is not None:  # states wait for a limit: look again when it may have room
                remaining = min(remaining, max(0.001, (room_at - now_ms()) / 1000))
            woken = await waiter.wait(remaining)
            await note_served(ctx, namespace, node_names)  # still asking, however long it waits


async def _claim_both(
    ctx: EngineContext, namespace: str, node_names: Sequence[str], batch_size: int, lease: int, claimant: Claimant
) -> tuple[list[StateRecord], int | None]:
    """The plain claim, then, for nodes with limits and while the batch has room, the limited claim;
    also when a state held back by a limit may go (None: none was held back)."""
    names = list(dict.fromkeys(node_names))
    lease_id = _random.token_hex(12)
    claimed = await ctx.storage.claim(namespace, names, batch_size, lease_id, lease, claimant)
    if len(claimed) >= batch_size:
        return claimed, None
    limited = await ctx.limited.among(ctx.storage, namespace, names)
    if not limited:
        return claimed, None
    more, room_at = await ctx.storage.claim_limited(
        namespace, limited, batch_size - len(claimed), lease_id, lease, claimant
    )
    return claimed + more, room_at


@dataclass(frozen=True)
class EagerClaim:
    """Ready states of `nodes` to claim in a completion's own transaction (eager dispatch).

    The runtime that reports a result gets its next states in the same answer, so the next
    `execute` needs no claim request of its own: one round trip per hop. Made inside the completing
    transaction, it sees the children that transaction created, and on PostgreSQL it holds across
    replicas like any claim (SKIP LOCKED).
    """

    nodes: Sequence[str]
    limit: int
    lease_ms: int | None = None


async def _claim_in(tx: Tx, ctx: EngineContext, namespace: str, eager: EagerClaim) -> list[StateRecord]:
    lease_ms = eager.lease_ms or ctx.default_lease_ms
    nodes = list(dict.fromkeys(eager.nodes))
    lease_id = _random.token_hex(12)
    claimed = await tx.claim_states(namespace, nodes, eager.limit, lease_id, lease_ms)
    limited = await ctx.limited.among(ctx.storage, namespace, nodes) if len(claimed) < eager.limit else []
    if limited:  # eager dispatch keeps to limits like any claim
        more, _ = await tx.claim_limited_states(namespace, limited, eager.limit - len(claimed), lease_id, lease_ms)
        claimed += more
    return claimed


async def _hand_out(
    ctx: EngineContext, namespace: str, claimed: list[StateRecord], *, eager: bool = False
) -> list[StateRecord]:
    """Claimed and committed states as they go to the runtime: counted, and the unsendable ones failed."""
    if not claimed:
        return claimed
    metrics.record_claims(claimed, eager=eager)
    return await _with_payloads(ctx, namespace, await _drop_unsendable(ctx, namespace, claimed))


async def _with_payloads(ctx: EngineContext, namespace: str, claimed: list[StateRecord]) -> list[StateRecord]:
    """Claimed states with the text of their large inputs, which the claim itself did not read: a runtime
    gets its inputs whole. One whose payload is gone (removed by hand) fails for good, alone."""
    if not any(payloads.refs_in(s.run_id, s.inputs) for s in claimed):
        return claimed
    sendable, missing = [], []
    async with ctx.storage.reader() as tx:
        for state in claimed:
            try:
                state.inputs = await tx.load_payloads(state.run_id, state.inputs)
            except payloads.PayloadMissing as gone:
                missing.append((state, gone))
            else:
                sendable.append(state)
    for state, problem in missing:
        await _fail_for_good(ctx, namespace, state.id, f"Its inputs cannot be sent to a runtime: {problem}")
    return sendable


async def _drop_unsendable(ctx: EngineContext, namespace: str, claimed: list[StateRecord]) -> list[StateRecord]:
    """Fail, alone and for good, a claimed state whose inputs cannot be sent (text stored before it was
    refused at the door): it would fail the whole answer, and every retry of it the same way."""
    problems = {s.id: unstorable_at(s.inputs, "inputs") for s in claimed}
    bad = [s for s in claimed if problems[s.id] is not None]
    if not bad:
        return claimed
    for state in bad:
        await _fail_for_good(ctx, namespace, state.id, f"Its inputs cannot be sent to a runtime: {problems[state.id]}")
    return [s for s in claimed if problems[s.id] is None]


async def heartbeat(ctx: EngineContext, namespace: str, state_id: str, lease_id: str, lease_ms: int | None) -> int:
    async with ctx.storage.transaction(durable=False) as tx:
        state = await load_state(tx, namespace, state_id)
        if state.lease_id == lease_id:
            _check_not_cancelled(state)  # how an executing node learns that its run was cancelled
        if state.status != _S.QUEUED or state.lease_id != lease_id:
            raise LeaseLost(f"Lease lost: state {state_id} is {state.status} and no longer held under this lease")
        expires = now_ms() + (lease_ms or ctx.default_lease_ms)
        if state.timeout_ms is not None and state.started_at is not None:
            # Never past the time-out: the lease then runs out at it, and lease expiry fails the attempt.
            expires = min(expires, state.started_at + state.timeout_ms)
        await tx.extend_lease(state.id, expires)
    await note_served(ctx, state.namespace, [state.node_name])  # a busy runtime polls no more, but serves
    return expires


async def release(ctx: EngineContext, namespace: str, state_id: str, lease_id: str) -> None:
    """Hand a claimed, never started state back: claimable again at once, its attempt not spent."""
    async with ctx.storage.transaction() as tx:
        state = await load_state(tx, namespace, state_id)
        if state.status == _S.CREATED and state.lease_id is None:
            return  # already released: a repeated call changes nothing
        _check_held(state, lease_id)
        await tx.requeue_state(state, now_ms(), lease_id=None, lease_expires_at=None, started_at=None)
        cancelled = await enforce_budgets(tx, [(await run_and_graph(tx, ctx, state.run_id))[0]])
    metrics.record_cancelled(cancelled)


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutedReport:
    state_id: str
    outputs: list[dict[str, str]]
    lease_id: str | None = None
    usage: dict[str, Any] | None = None  # what the attempt used (`contract.Usage` without its nulls)


async def executed(
    ctx: EngineContext,
    namespace: str,
    state_id: str,
    outputs: list[dict[str, str]],
    lease_id: str | None,
    eager: EagerClaim | None = None,
    usage: dict[str, Any] | None = None,
) -> list[StateRecord]:
    """Record outputs (one per fan-out branch) and the attempt's usage, create the children, mark
    success: one transaction.

    Returns the states claimed for `eager` in that transaction (none without it)."""
    report = ExecutedReport(state_id, outputs, lease_id, usage)
    [answer], claimed = await executed_many(ctx, namespace, [report], eager)
    if answer is not None:
        raise answer
    return claimed


async def executed_many(
    ctx: EngineContext, namespace: str, reports: Sequence[ExecutedReport], eager: EagerClaim | None = None
) -> tuple[list[EngineError | None], list[StateRecord]]:
    """Apply several results in one transaction (one commit); each refusal is returned, not raised.

    A refusal is decided before anything of its report is written, so the others still commit. The
    reads and writes of all reports go together (one lock statement, one update, one insert), which
    is what makes a busy runtime cheap on PostgreSQL, where every statement is a round trip. With
    `eager`, the same transaction then claims ready states for the reporting runtime (returned
    second), among them the children just created.
    """
    answers: list[EngineError | None] = [None] * len(reports)
    applied: list[_Completed] = []
    async with ctx.storage.transaction() as tx:
        # States in id order, then unite targets in id order (evaluate_unites_of): one global lock
        # order, so two batches finishing overlapping work never deadlock on PostgreSQL.
        held = await tx.lock_states(sorted({r.state_id for r in reports}))
        await preload_runs(tx, ctx, {state.run_id for state in held.values()})
        for index, report in sorted(enumerate(reports), key=lambda item: item[1].state_id):
            state = held.get(report.state_id)
            try:
                if state is None or state.namespace != namespace:
                    raise NotFound("State not found")
                completed = await _apply_executed(tx, ctx, state, report)
            except EngineError as exc:
                answers[index] = exc
            else:
                if completed is not None:
                    applied.append(completed)
        await tx.finish_states([(c.was, c.state) for c in applied])
        await tx.insert_states([s for c in applied for s in (*c.siblings, *c.children)])
        await evaluate_unites_of([c.finished for c in applied], tx)
        # Before the eager claim: a run this batch took over its budget hands out nothing more.
        cancelled = await enforce_budgets(tx, [c.finished.run for c in applied])
        claimed = await _claim_in(tx, ctx, namespace, eager) if eager is not None else []
    metrics.record_completions((completed.state, completed.status) for completed in applied)
    metrics.record_cancelled(cancelled)
    if eager is not None:
        await note_served(ctx, namespace, eager.nodes)  # asking with its results is asking for work
    return answers, await _hand_out(ctx, namespace, claimed, eager=True)


async def preload_runs(tx: Tx, ctx: EngineContext, run_ids: set[str]) -> None:
    """Read the runs (and pinned graphs) not cached yet in one query, instead of one per state."""
    missing = [run_id for run_id in run_ids if ctx.runs.get(run_id) is None]
    for run in await tx.get_runs(missing):
        pinned = ctx.pinned.cached(run.namespace, run.graph_name, run.graph_version)
        if pinned is not None:
            ctx.runs.put(run, pinned)  # the rest is read by run_and_graph, state by state


@dataclass
class _Completed:
    state: StateRecord
    was: str  # the status the state had when locked: the move is checked from it
    status: str
    error: str | None
    finished_at: int
    siblings: list[StateRecord]
    children: list[StateRecord]
    finished: Finished


async def _apply_executed(tx: Tx, ctx: EngineContext, state: StateRecord, report: ExecutedReport) -> _Completed | None:
    outputs, lease_id = report.outputs, report.lease_id
    first = outputs[0] if outputs else {}
    if (
        state.status in AFTER_EXECUTED
        and not state.lease_expired
        and (
            (lease_id is not None and lease_id == state.lease_id)
            or (lease_id is None and payloads.same_values(state.outputs, first))
        )
    ):
        return None  # the same result again (a retry after a lost response): already applied
    _check_held(state, lease_id)
    run, graph = await run_and_graph(tx, ctx, state.run_id)
    now = now_ms()
    was = state.status
    state.outputs = first
    state.usage = report.usage
    await correct_by_usage(tx, state, report.usage)
    pacer = Pacer()  # a fan-out of thousands of branches must not hold the event loop while it is built
    siblings = []
    for extra in outputs[1:]:
        # A shallow copy, as `dataclasses.replace` would make, at a third of its cost: the siblings share
        # the original's inputs, parents and carried values (never changed in place).
        sibling = shallow_copy(state)
        sibling.id = new_id()
        sibling.outputs = extra
        sibling.usage = None  # the attempt's usage is counted once, on the state that ran
        sibling.fanout_id = random_hex(12)
        sibling.does_unites = False
        sibling.fingerprint = None
        sibling.created_at = sibling.updated_at = now
        siblings.append(sibling)
        await pacer.give_way()
    branch = [state, *siblings]
    try:
        children = await create_children(tx, graph, run, branch, pacer)
        status, error = _S.SUCCESS.value, None
    except NextStateError as exc:
        children, status, error = [], _S.NEXT_CREATED_ERROR.value, str(exc)
    for s in branch:
        s.status, s.error, s.finished_at = status, error, now
    return _Completed(state, was, status, error, now, siblings, children, Finished(graph, run, branch))


async def errored(
    ctx: EngineContext,
    namespace: str,
    state_id: str,
    error: str,
    lease_id: str | None,
    traceback: str | None = None,
    usage: dict[str, Any] | None = None,
) -> bool:
    """Record a failure, with the traceback and the usage the runtime sent (a failed attempt may have
    used tokens too); returns whether a retry was created under the graph's retry policy."""
    async with ctx.storage.transaction() as tx:
        state = await load_state(tx, namespace, state_id)
        if (
            state.status in AFTER_ERRORED
            and not state.lease_expired
            and ((lease_id is not None and lease_id == state.lease_id) or (lease_id is None and state.error == error))
        ):
            return state.status == _S.RETRY_CREATED
        if state.status == _S.EXECUTED or (state.status in AFTER_EXECUTED and lease_id == state.lease_id):
            raise BadRequest("State is already executed")
        _check_held(state, lease_id, not_held="State is not queued or executed")
        run, graph = await run_and_graph(tx, ctx, state.run_id)
        retried = await fail_state(tx, graph, run, state, error, traceback=_kept_traceback(traceback), usage=usage)
        cancelled = await enforce_budgets(tx, [run])
    metrics.record_completion(state, state.status)
    metrics.record_cancelled(cancelled)
    return retried


TRACEBACK_KEPT_CHARS = 65_536


def _kept_traceback(traceback: str | None) -> str | None:
    """The end of a traceback: the innermost frames and the error are at its end, and a runaway
    recursion's traceback must not fill the database."""
    if traceback is None or len(traceback) <= TRACEBACK_KEPT_CHARS:
        return traceback
    return "[... earlier frames cut]\n" + traceback[-TRACEBACK_KEPT_CHARS:]


async def fail_state(
    tx: Tx,
    graph: PinnedGraph,
    run: RunRecord,
    state: StateRecord,
    error: str,
    *,
    lease_expired: bool = False,
    finished: list[Finished] | None = None,
    retryable: bool = True,
    traceback: str | None = None,
    usage: dict[str, Any] | None = None,
) -> bool:
    """Apply the retry policy to a failed attempt: a delayed retry state, or ERRORED for good.

    `retryable=False` is for failures that no new attempt can mend (the state's own data is the fault).
    `usage` is what the attempt reported using, stored with it and counted.
    """
    now = now_ms()
    retried = retryable and state.retry_count < graph.retry_policy.max_retries
    if retried:
        retry = _copy_attempt(
            state,
            run,
            status=initial_status(graph, state.identifier),
            retry_count=state.retry_count + 1,
            fanout_id=state.fanout_id,
            manual_retry_fanout_id=state.manual_retry_fanout_id,
        )
        retry.enqueue_after = now + retry_delay_ms(graph.retry_policy, retry.retry_count)
        await tx.insert_state_unless_duplicate(retry)
    await tx.move_states(
        [state],
        _S.RETRY_CREATED if retried else _S.ERRORED,
        error=error,
        finished_at=now,
        lease_expired=lease_expired,
        traceback=traceback,
        **({"usage": usage} if usage else {}),
    )
    if usage:
        state.usage = usage
    await correct_by_usage(tx, state, usage)
    if not retried:
        if finished is None:
            await evaluate_unites(tx, graph, run, [state])
        else:
            finished.append(Finished(graph, run, [state]))
    return retried


def _copy_attempt(state: StateRecord, run: RunRecord, **changes: Any) -> StateRecord:
    now = now_ms()
    copy = replace(
        state,
        id=new_id(),
        outputs={},
        data={},
        error=None,
        enqueue_after=now,
        lease_id=None,
        lease_expires_at=None,
        lease_expired=False,
        claims=0,
        started_at=None,
        finished_at=None,
        runtime_name=None,
        runtime_instance=None,
        traceback=None,
        created_at=now,
        updated_at=now,
        waiting_for=None,
        wait_timeout_at=None,
        signal=None,  # a new attempt that waits again is answered from the run's kept signals
        usage=None,
        **changes,
    )
    if copy.does_unites:
        copy.fingerprint = unite_fingerprint(
            node_name=copy.node_name,
            namespace_name=copy.namespace,
            identifier=copy.identifier,
            graph_name=copy.graph_name,
            run_id=run.run_id,
            retry_count=copy.retry_count,
            parents=copy.parents,
            manual_retry_fanout_id=copy.manual_retry_fanout_id,
        )
    return copy


async def prune(ctx: EngineContext, namespace: str, state_id: str, data: dict[str, Any], lease_id: str | None) -> int:
    async with ctx.storage.transaction() as tx:
        state = await load_state(tx, namespace, state_id)
        if state.status == _S.PRUNED and lease_id is not None and lease_id == state.lease_id:
            return state.enqueue_after
        _check_held(state, lease_id)
        run, graph = await run_and_graph(tx, ctx, state.run_id)
        await tx.move_states([state], _S.PRUNED, data=data, finished_at=now_ms())
        await evaluate_unites(tx, graph, run, [state])
    metrics.record_completion(state, state.status)
    return state.enqueue_after


async def requeue_after(ctx: EngineContext, namespace: str, state_id: str, delay_ms: int, lease_id: str | None) -> int:
    """Offer the same state again after a delay (the ReQueueAfter signal); only a held state can do this (D6)."""
    async with ctx.storage.transaction() as tx:
        state = await load_state(tx, namespace, state_id)
        _check_held(state, lease_id)
        enqueue_after = now_ms() + delay_ms
        await tx.requeue_state(state, enqueue_after, lease_id=None, lease_expires_at=None, started_at=None)
        cancelled = await enforce_budgets(tx, [(await run_and_graph(tx, ctx, state.run_id))[0]])
    metrics.record_cancelled(cancelled)
    return enqueue_after


async def manual_retry(ctx: EngineContext, namespace: str, state_id: str, fanout_id: str) -> StateRecord:
    """A fresh attempt of a failed state, keyed by the caller's `fanout_id` so that repeating it is harmless."""
    async with ctx.storage.transaction() as tx:
        state = await load_state(tx, namespace, state_id)
        if state.status not in RETRYABLE_BY_HAND:
            if state.status == _S.RETRY_CREATED:
                raise Conflict("Duplicate retry state detected")
            retryable = " or ".join(sorted(RETRYABLE_BY_HAND))
            raise Conflict(f"State {state_id} is {state.status}: only {retryable} states can be retried")
        run, graph = await run_and_graph(tx, ctx, state.run_id)
        if await tx.get_run_cancellation(run.run_id) is not None:
            raise Conflict(f"Run {run.run_id} is cancelled: nothing new starts in it, so {state_id} cannot be retried")
        retry = _copy_attempt(
            state,
            run,
            status=initial_status(graph, state.identifier),
            retry_count=0,
            fanout_id=fanout_id,
            manual_retry_fanout_id=fanout_id,
        )
        if not await tx.insert_state_unless_duplicate(retry):
            raise Conflict("Duplicate retry state detected")
        await tx.move_states([state], _S.RETRY_CREATED)
    return retry


async def expire_leases(ctx: EngineContext, limit: int = 200) -> int:
    """Send every state whose lease ran out back through the retry policy. Returns how many."""
    async with ctx.storage.transaction() as tx:
        expired = await tx.expired_leases(now_ms(), limit)
        finished: list[Finished] = []
        runs: list[RunRecord] = []  # a retry in a run over its budget is cancelled at once
        for state in expired:
            assert state.lease_expires_at is not None
            when = datetime.fromtimestamp(state.lease_expires_at / 1000, UTC).isoformat(timespec="milliseconds")
            error = f"Lease expired at {when}: the runtime sent no result or heartbeat in time"
            if _timed_out(state):
                assert state.timeout_ms is not None
                error = timeout_error(state.timeout_ms)
            state.lease_expired = True
            try:
                run, graph = await run_and_graph(tx, ctx, state.run_id)
            except NotFound as exc:
                # Its run is gone (retention raced a retry): end the state rather than block every expiry.
                await tx.move_states([state], _S.ERRORED, error=f"{error}; {exc.message}", lease_expired=True)
                continue
            await fail_state(tx, graph, run, state, error, lease_expired=True, finished=finished)
            runs.append(run)
        await evaluate_unites_of(finished, tx)
        cancelled = await enforce_budgets(tx, runs)
    metrics.record_cancelled(cancelled)
    metrics.LEASE_EXPIRIES.inc(len(expired))
    for state in expired:
        metrics.record_completion(state, state.status)
    return len(expired)


async def secrets_for_state(ctx: EngineContext, namespace: str, state_id: str) -> dict[str, str]:
    """Plaintext secrets of the state's graph, only for a state a runtime holds right now (D14, D15).

    Secrets that this server's key cannot decrypt fail the state for good, with an error that says
    so, instead of an answer the runtime would retry for ever.
    """
    async with ctx.storage.reader() as tx:
        state = await load_state(tx, namespace, state_id, for_update=False)
        if state.status != _S.QUEUED:
            raise Conflict(f"State {state_id} is {state.status}: secrets are given only to the runtime holding it")
        run = await tx.get_run(state.run_id)
        graph = await tx.get_graph(run.namespace, run.graph_name) if run else None
    if graph is None:
        raise NotFound("Graph template not found")
    try:
        return {name: ctx.box.decrypt(token) for name, token in graph.secrets.items()}
    except SecretUnreadable as exc:
        error = (
            f"Secrets of graph {graph.name} cannot be read: {exc}. Upsert the graph again with its secrets, "
            "or start the server with the key they were stored under (see docs/operations.md, secrets key)"
        )
        await _fail_for_good(ctx, namespace, state_id, error)
        raise Conflict(f"State {state_id} failed: {error}") from exc


async def _fail_for_good(ctx: EngineContext, namespace: str, state_id: str, error: str) -> None:
    async with ctx.storage.transaction() as tx:
        state = await load_state(tx, namespace, state_id)
        if state.status != _S.QUEUED:
            return
        run, graph = await run_and_graph(tx, ctx, state.run_id)
        await fail_state(tx, graph, run, state, error, retryable=False)
    metrics.record_completion(state, state.status)
