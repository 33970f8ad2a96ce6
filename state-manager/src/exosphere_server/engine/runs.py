"""Runs: starting one (trigger), and reading what it did."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exosphere_server.clock import now_ms
from exosphere_server.engine.audit import AuditNote, write_entry
from exosphere_server.engine.context import EngineContext, PinnedGraph
from exosphere_server.engine.errors import BadRequest, NotFound
from exosphere_server.engine.limits import node_charges
from exosphere_server.engine.next_states import new_state
from exosphere_server.engine.placeholders import OutputRef, PlaceholderError, Ref, StoreRef, parse_template, render
from exosphere_server.engine.run_counts import RunSummary, run_in
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import RunCancellationRecord, RunRecord, StateRecord

STATE_ID = re.compile(r"^[0-9a-f]{24}$")


@dataclass(frozen=True)
class RunRequest:
    """What one trigger asks for: the root node's inputs, the run's store, a start delay, an idempotency
    key, and a deadline (`None`: the graph's default, if it has one)."""

    inputs: Mapping[str, str] = field(default_factory=dict)
    store: Mapping[str, str] = field(default_factory=dict)
    start_delay_ms: int = 0
    idempotency_key: str | None = None
    deadline_seconds: float | None = None
    priority: int | None = None  # None: the graph's, else 0
    budget: Mapping[str, Any] | None = None  # None: the graph's, if it has one


@dataclass(frozen=True)
class StartedRun:
    """A trigger's answer: the run's id, and whether an earlier trigger with the same key started it."""

    run_id: str
    duplicate: bool = False


async def trigger(
    ctx: EngineContext, namespace: str, graph_name: str, request: RunRequest, audit: AuditNote | None = None
) -> StartedRun:
    """Start a run of the graph's current version: the run, its store and its root state commit together (D5).

    With an idempotency key that an earlier trigger of this graph used (within the key's time), nothing
    is created and that trigger's run is answered, also when the two race on different replicas. A
    deadline (`request.deadline_seconds`, else the graph's default) cancels the run with reason
    `deadline exceeded` when it is still pending that long after the trigger. `audit`: the audit log
    entry, written in the same transaction and naming the run (`run_id ...`).
    """
    return (await trigger_many(ctx, namespace, graph_name, [request], audit))[0]


async def trigger_many(
    ctx: EngineContext,
    namespace: str,
    graph_name: str,
    requests: Sequence[RunRequest],
    audit: AuditNote | None = None,
) -> list[StartedRun]:
    """Start one run per request, in one transaction (all or none); the answers in the requests' order.

    A bad request fails the whole batch with a `BadRequest` that names its position (`runs[3]: ...`).
    `audit`: the audit log entry, in the same transaction; for one run it names the run.
    """
    async with ctx.storage.transaction() as tx:
        pinned, version = await _triggerable_graph(tx, ctx, namespace, graph_name)
        now = now_ms()
        started: list[StartedRun] = []
        new_runs: list[RunRecord] = []
        roots: list[StateRecord] = []
        deadlines: list[tuple[RunRecord, float | None]] = []
        for index, request in enumerate(requests):
            try:
                root_inputs = _checked_root_inputs(pinned, request, defaults_satisfy_required=False)
            except BadRequest as exc:
                raise BadRequest(f"runs[{index}]: {exc.message}" if len(requests) > 1 else exc.message) from exc
            run_id = str(uuid.uuid4())
            if request.idempotency_key is not None:
                owner = await tx.take_trigger_key(
                    namespace, graph_name, request.idempotency_key, run_id, now, now + ctx.idempotency_key_ms
                )
                if owner != run_id:
                    started.append(StartedRun(owner, duplicate=True))
                    continue
            run = _new_run(run_id, namespace, graph_name, version, request, pinned, now)
            new_runs.append(run)
            roots.append(_root_state(pinned, run, root_inputs, now + request.start_delay_ms))
            deadlines.append((run, request.deadline_seconds))
            started.append(StartedRun(run_id))
        await tx.insert_runs(new_runs)
        await tx.insert_states(roots)
        for run, deadline_seconds in deadlines:
            await _set_deadline(tx, pinned, run, deadline_seconds)
        if audit is not None:
            await write_entry(tx, audit, f"run_id {started[0].run_id}" if len(started) == 1 else None)
        return started


async def start_run(
    tx: Tx,
    ctx: EngineContext,
    namespace: str,
    graph_name: str,
    *,
    inputs: Mapping[str, str],
    store: Mapping[str, str],
    start_delay_ms: int,
    defaults_satisfy_required: bool,
    deadline_seconds: float | None = None,
) -> str:
    """Start one run inside the caller's transaction (cron firing); its id."""
    pinned, version = await _triggerable_graph(tx, ctx, namespace, graph_name)
    request = RunRequest(inputs=inputs, store=store, start_delay_ms=start_delay_ms)
    root_inputs = _checked_root_inputs(pinned, request, defaults_satisfy_required=defaults_satisfy_required)
    run = _new_run(str(uuid.uuid4()), namespace, graph_name, version, request, pinned, now_ms())
    await tx.insert_runs([run])
    await tx.insert_states([_root_state(pinned, run, root_inputs, run.created_at + start_delay_ms)])
    await _set_deadline(tx, pinned, run, deadline_seconds)
    return run.run_id


def _new_run(
    run_id: str, namespace: str, graph_name: str, version: int, request: RunRequest, pinned: PinnedGraph, now: int
) -> RunRecord:
    """The run a trigger starts, with the trigger's priority and budget, else the graph's."""
    priority = request.priority if request.priority is not None else (pinned.priority or 0)
    budget = request.budget if request.budget is not None else pinned.budget
    return RunRecord(
        run_id,
        namespace,
        graph_name,
        version,
        dict(request.store),
        created_at=now,
        priority=priority,
        budget=None if budget is None else dict(budget),
    )


async def start_child_run(
    tx: Tx, ctx: EngineContext, parent_run: RunRecord, parent_state: StateRecord, graph_name: str
) -> RunRecord:
    """Start a run of `graph_name` for a state whose node names it, inside the caller's transaction.

    The state's inputs are the child's first node's inputs; the child run gets the parent run's store
    (the child graph's defaults fill the rest) and records the run and state it runs for. A graph that
    is gone or invalid, or a store key it requires that nobody gives, is a `BadRequest` or `NotFound`.
    """
    pinned, version = await _triggerable_graph(tx, ctx, parent_run.namespace, graph_name)
    # Payloads are kept per run: a large input is read from the parent's and stored again for the child.
    inputs = await tx.load_payloads(parent_run.run_id, parent_state.inputs)
    request = RunRequest(inputs=inputs, store=parent_run.store)
    root_inputs = _checked_root_inputs(pinned, request, defaults_satisfy_required=True)
    run = RunRecord(
        str(uuid.uuid4()),
        parent_run.namespace,
        graph_name,
        version,
        dict(parent_run.store),
        created_at=now_ms(),
        priority=parent_run.priority,  # a child run is part of its parent's work
        parent_run_id=parent_run.run_id,
        parent_state_id=parent_state.id,
    )
    await tx.insert_runs([run])
    await tx.insert_states([_root_state(pinned, run, root_inputs, run.created_at)])
    await _set_deadline(tx, pinned, run, None)
    return run


async def _set_deadline(tx: Tx, pinned: PinnedGraph, run: RunRecord, deadline_seconds: float | None) -> None:
    """Record the run's deadline: the trigger's, else the graph's default; none when neither has one."""
    if deadline_seconds is None:
        deadline_seconds = pinned.deadline_seconds
    if deadline_seconds is not None:
        await tx.insert_run_deadline(run.run_id, run.created_at + max(1, round(deadline_seconds * 1000)))


async def _triggerable_graph(tx: Tx, ctx: EngineContext, namespace: str, graph_name: str) -> tuple[PinnedGraph, int]:
    """The graph's current version, pinned, and its number; 404 for no graph, 400 for an invalid one."""
    graph = await tx.graph_head(namespace, graph_name)
    if graph is None:
        raise NotFound(f"Graph template not found for namespace {namespace} and graph {graph_name}")
    current = graph.version
    if graph.validation_status != "VALID":
        reasons = "; ".join(graph.validation_errors)
        raise BadRequest("Graph template is not valid" + (f": {reasons}" if reasons else ""))
    pinned = ctx.pinned.cached(namespace, graph_name, current)
    if pinned is None:
        version = await tx.get_graph_version(namespace, graph_name, current)
        assert version is not None
        pinned = await ctx.pinned.get(version)
    return pinned, current


def _checked_root_inputs(
    pinned: PinnedGraph, request: RunRequest, *, defaults_satisfy_required: bool
) -> dict[str, str]:
    root = pinned.shape.nodes[pinned.shape.root]
    root_inputs = _root_inputs(root.inputs, request.inputs, request.store, pinned)
    satisfied = set(request.store) | (set(pinned.store_config.default_values) if defaults_satisfy_required else set())
    missing = [key for key in pinned.store_config.required_keys if key not in satisfied]
    if missing:
        raise BadRequest(f"Missing store keys: {missing}")
    return root_inputs


def _root_state(pinned: PinnedGraph, run: RunRecord, inputs: dict[str, str], enqueue_after: int) -> StateRecord:
    root = pinned.shape.nodes[pinned.shape.root]
    return new_state(
        template_namespace=root.namespace,
        node_name=root.node_name,
        identifier=root.identifier,
        run=run,
        inputs=inputs,
        parents={},
        enqueue_after=enqueue_after,
        timeout_ms=pinned.timeout_ms(root.identifier),
        limits=node_charges(
            pinned,
            root.identifier,
            lambda text: _root_inputs({"value": text}, {}, run.store, pinned)["value"],
            BadRequest,
        ),
    )


def _root_inputs(
    template: Mapping[str, str], given: Mapping[str, str], store: Mapping[str, str], graph: PinnedGraph
) -> dict[str, str]:
    """Caller values are literals (never parsed); template values may only read the store."""

    def resolve(ref: Ref) -> str:
        if isinstance(ref, OutputRef):
            raise BadRequest(f"Invalid input: the root node cannot read outputs ({ref})")
        assert isinstance(ref, StoreRef)
        if ref.key in store:
            return store[ref.key]
        if ref.key in graph.store_config.default_values:
            return graph.store_config.default_values[ref.key]
        raise BadRequest(f"Invalid input: store key '{ref.key}' is neither given nor defaulted")

    resolved: dict[str, str] = {}
    for key, value in template.items():
        if key in given:
            resolved[key] = given[key]
            continue
        try:
            resolved[key] = render(parse_template(value), resolve)
        except PlaceholderError as exc:
            raise BadRequest(f"Invalid input: {exc}") from exc
    return resolved


async def run_summary(ctx: EngineContext, namespace: str, run_id: str, wait_ms: int = 0) -> RunSummary:
    """A run's counts and status; with `wait_ms`, answer as soon as it has finished (or the bound passes).

    The wait follows the run's change feed (`ctx.feed`), which hears every replica's commits: no
    query per waiter, however many wait on the run.
    """
    if wait_ms <= 0:
        async with ctx.storage.reader() as tx:
            run = await run_in(tx, namespace, run_id)
            summary = RunSummary(run, (await tx.run_counts([run_id]))[run_id])
            await _note_finish_times(tx, [summary])
            return summary
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms / 1000
    async with ctx.feed.follow(namespace, run_id) as follower:
        latest = follower.latest
        while not latest.summary.finished:
            remaining = deadline - loop.time()
            if remaining <= 0 or await follower.next(latest.version, remaining) is None:
                break
            latest = follower.latest
    summary = latest.summary
    if summary.finished:
        async with ctx.storage.reader() as tx:
            await _note_finish_times(tx, [summary])
    return summary


async def _note_finish_times(tx: Tx, summaries: Sequence[RunSummary]) -> None:
    """Give finished runs their end (their last state's), read only for them: the kept counts that
    summaries come from do not hold it, and a running run's duration runs to now."""
    finished = [s for s in summaries if s.finished]
    if finished:
        ends = await tx.run_finish_times([s.run.run_id for s in finished])
        for summary in finished:
            summary.counts.last_finished_at = ends.get(summary.run.run_id)


async def child_runs(ctx: EngineContext, run_id: str, *, state_id: str | None = None) -> list[RunSummary]:
    """The child runs the run's states started (nodes that name a graph), oldest first, with their counts;
    with `state_id`, only that state's (one per attempt: a retry starts its own)."""
    async with ctx.storage.reader() as tx:
        children = await (tx.child_runs([state_id]) if state_id else tx.child_runs_of_run(run_id))
        counts = await tx.run_counts([child.run_id for child in children])
        summaries = [RunSummary(child, counts[child.run_id]) for child in children]
        await _note_finish_times(tx, summaries)
    return summaries


async def run_finished_at(ctx: EngineContext, run_id: str) -> int | None:
    """When the run's last state ended (None while nothing has ended)."""
    async with ctx.storage.reader() as tx:
        return (await tx.run_finish_times([run_id])).get(run_id)


async def run_cancellation(ctx: EngineContext, run_id: str) -> RunCancellationRecord | None:
    """How the run was cancelled (its reason), or None when it was not."""
    async with ctx.storage.reader() as tx:
        return await tx.get_run_cancellation(run_id)


async def list_runs(
    ctx: EngineContext,
    namespace: str,
    page: int,
    size: int,
    graph_name: str | None = None,
    *,
    status: str | None = None,
    created_from: int | None = None,
    created_to: int | None = None,
) -> tuple[int, list[RunSummary]]:
    """One page of a namespace's runs, newest first, with how many match: for the API, CLI and dashboard."""
    async with ctx.storage.reader() as tx:
        total, runs = await tx.find_runs(
            namespace,
            graph_name=graph_name,
            status=status,
            created_from=created_from,
            created_to=created_to,
            offset=(page - 1) * size,
            limit=size,
        )
        counts = await tx.run_counts([r.run_id for r in runs])
        summaries = [RunSummary(r, counts[r.run_id]) for r in runs]
        await _note_finish_times(tx, summaries)
    return total, summaries


async def run_states(ctx: EngineContext, namespace: str, run_id: str) -> tuple[RunRecord | None, list[StateRecord]]:
    async with ctx.storage.reader() as tx:
        run = await tx.get_run(run_id)
        if run is None or run.namespace != namespace:
            return None, []
        return run, await tx.states_of_run(run_id)


async def run_states_page(
    ctx: EngineContext, namespace: str, run_id: str, page: int, size: int
) -> tuple[int, list[StateRecord]]:
    """One page of a run's states, oldest first, and how many it has in all; a 404 for an unknown run."""
    async with ctx.storage.reader() as tx:
        await run_in(tx, namespace, run_id)
        total = (await tx.run_counts([run_id]))[run_id].total
        return total, await tx.with_full_lineage(await tx.states_of_run(run_id, offset=(page - 1) * size, limit=size))


async def state_in_run(ctx: EngineContext, namespace: str, graph_name: str, run_id: str, state_id: str) -> StateRecord:
    if not STATE_ID.match(state_id):
        raise BadRequest(f"Invalid node ID format: {state_id}")
    async with ctx.storage.reader() as tx:
        state = await tx.get_state(state_id)
        run = await tx.get_run(run_id)
        if state is not None:
            state = (await tx.with_full_lineage([state]))[0]
    if (
        state is None
        or run is None
        or run.namespace != namespace
        or state.run_id != run_id
        or state.graph_name != graph_name
    ):
        raise NotFound(f"Node {state_id} not found in run {run_id} for graph {graph_name}")
    return state


async def get_state(ctx: EngineContext, namespace: str, state_id: str) -> StateRecord:
    async with ctx.storage.reader() as tx:
        state = await tx.get_state(state_id)
        run = await tx.get_run(state.run_id) if state else None
        if state is not None:
            state = (await tx.with_full_lineage([state]))[0]
    if state is None or run is None or (run.namespace != namespace and state.namespace != namespace):
        raise NotFound(f"State {state_id} not found in namespace {namespace}")
    return state


async def delete_finished_runs(ctx: EngineContext, older_than_ms: int, limit: int) -> int:
    """Retention: delete up to `limit` runs created before `older_than_ms` whose states are all final."""
    async with ctx.storage.transaction() as tx:
        return await tx.delete_finished_runs(older_than_ms, limit=limit)


ORPHAN_PAYLOAD_AGE_MS = 3_600_000  # far longer than any transaction writing a payload stays open


async def sweep_orphan_payloads(ctx: EngineContext, now: int) -> int:
    """Remove payloads left by a crash (of runs that do not exist), an hour old at least; how many runs'."""
    async with ctx.storage.reader() as tx:
        return await tx.sweep_orphan_payloads(now - ORPHAN_PAYLOAD_AGE_MS)


async def forget_expired_trigger_keys(ctx: EngineContext, now: int) -> int:
    """Drop the idempotency keys whose time is over, a thousand per transaction; how many went."""
    forgotten = 0
    while True:
        async with ctx.storage.transaction() as tx:
            count = await tx.delete_expired_trigger_keys(now, limit=1000)
        forgotten += count
        if count < 1000:
            return forgotten
