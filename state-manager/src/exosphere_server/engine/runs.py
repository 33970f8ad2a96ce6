"""Runs: starting one (trigger), and reading what it did."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping

from exosphere_server.clock import now_ms
from exosphere_server.engine.context import EngineContext, PinnedGraph
from exosphere_server.engine.errors import BadRequest, NotFound
from exosphere_server.engine.next_states import new_state
from exosphere_server.engine.placeholders import OutputRef, PlaceholderError, Ref, StoreRef, parse_template, render
from exosphere_server.engine.run_counts import RunSummary, run_not_found
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import RunCancellationRecord, RunRecord, StateRecord

STATE_ID = re.compile(r"^[0-9a-f]{24}$")


async def trigger(
    ctx: EngineContext,
    namespace: str,
    graph_name: str,
    *,
    inputs: Mapping[str, str],
    store: Mapping[str, str],
    start_delay_ms: int = 0,
    defaults_satisfy_required: bool = False,
    deadline_seconds: float | None = None,
) -> str:
    """Start a run of the graph's current version: the run, its store and its root state commit together (D5).

    `deadline_seconds` (else the graph's default) cancels the run with reason `deadline exceeded` when
    it is still pending that long after the trigger."""
    async with ctx.storage.transaction() as tx:
        return await start_run(
            tx,
            ctx,
            namespace,
            graph_name,
            inputs=inputs,
            store=store,
            start_delay_ms=start_delay_ms,
            defaults_satisfy_required=defaults_satisfy_required,
            deadline_seconds=deadline_seconds,
        )


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
    graph = await tx.graph_head(namespace, graph_name)
    if graph is None:
        raise NotFound(f"Graph template not found for namespace {namespace} and graph {graph_name}")
    if graph.validation_status != "VALID":
        reasons = "; ".join(graph.validation_errors)
        raise BadRequest("Graph template is not valid" + (f": {reasons}" if reasons else ""))
    pinned = ctx.pinned.cached(namespace, graph_name, graph.version)
    if pinned is None:
        version = await tx.get_graph_version(namespace, graph_name, graph.version)
        assert version is not None
        pinned = await ctx.pinned.get(version)
    root = pinned.shape.nodes[pinned.shape.root]
    root_inputs = _root_inputs(root.inputs, inputs, store, pinned)
    satisfied = set(store) | (set(pinned.store_config.default_values) if defaults_satisfy_required else set())
    missing = [key for key in pinned.store_config.required_keys if key not in satisfied]
    if missing:
        raise BadRequest(f"Missing store keys: {missing}")
    run = RunRecord(
        run_id=str(uuid.uuid4()),
        namespace=namespace,
        graph_name=graph_name,
        graph_version=graph.version,
        store=dict(store),
        created_at=now_ms(),
    )
    await tx.insert_run(run)
    await tx.insert_states(
        [
            new_state(
                template_namespace=root.namespace,
                node_name=root.node_name,
                identifier=root.identifier,
                run=run,
                inputs=root_inputs,
                parents={},
                enqueue_after=run.created_at + start_delay_ms,
                timeout_ms=pinned.timeout_ms(root.identifier),
            )
        ]
    )
    if deadline_seconds is None:
        deadline_seconds = pinned.deadline_seconds
    if deadline_seconds is not None:
        await tx.insert_run_deadline(run.run_id, run.created_at + max(1, round(deadline_seconds * 1000)))
    return run.run_id


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
            run = await tx.get_run(run_id)
            if run is None or run.namespace != namespace:
                raise run_not_found(namespace, run_id)
            return RunSummary(run, (await tx.run_counts([run_id]))[run_id])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_ms / 1000
    async with ctx.feed.follow(namespace, run_id) as follower:
        latest = follower.latest
        while not latest.summary.finished:
            remaining = deadline - loop.time()
            if remaining <= 0 or await follower.next(latest.version, remaining) is None:
                break
            latest = follower.latest
        return latest.summary


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
    return total, [RunSummary(r, counts[r.run_id]) for r in runs]


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
        run = await tx.get_run(run_id)
        if run is None or run.namespace != namespace:
            raise run_not_found(namespace, run_id)
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
