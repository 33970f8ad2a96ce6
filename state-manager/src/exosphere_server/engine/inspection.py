"""Read-only views for people inspecting the work (the CLI, the dashboard): what a namespace holds, how
far a run has come per template node, a node's states a page at a time, a state's other attempts.

Every read checks that the run or state belongs to the namespace asked about (a namespace is a wall).

Example::

    progress = await run_state_counts(ctx, "prod", run_id)
    progress.summary.status                      # a RunStatus: PENDING, SUCCESS or FAILED
    [(c.identifier, c.status, c.count) for c in progress.counts]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.errors import NotFound
from exosphere_server.engine.run_counts import RunStateCounts, read_run_state_counts, run_in, run_not_found
from exosphere_server.storage.records import AttemptRecord, RunRecord, StateRecord


@dataclass
class StateDetail:
    """A state, its run, and the states at the same place in the run (retries, manual retries, fan-out
    siblings), oldest first."""

    state: StateRecord
    run: RunRecord
    same_position: list[StateRecord]


async def namespace_counts(ctx: EngineContext) -> dict[str, tuple[int, int, int]]:
    """namespace -> (graph templates, runs, registered nodes), for every namespace holding any of them."""
    async with ctx.storage.reader() as tx:
        return await tx.namespace_counts()


async def run_state_counts(ctx: EngineContext, namespace: str, run_id: str) -> RunStateCounts:
    """A run's states counted per (template node, status): one GROUP BY, whatever the run's size."""
    counted = await read_run_state_counts(ctx.storage, run_id)
    if counted is None or counted.run.namespace != namespace:
        raise run_not_found(namespace, run_id)
    return counted


async def run_template_nodes(ctx: EngineContext, run: RunRecord) -> list[dict[str, Any]]:
    """The template nodes of the version the run was triggered with (a later upsert never changes it)."""
    async with ctx.storage.reader() as tx:
        version = await tx.get_graph_version(run.namespace, run.graph_name, run.graph_version)
    return version.nodes if version is not None else []


async def node_states_page(
    ctx: EngineContext,
    namespace: str,
    run_id: str,
    identifier: str,
    statuses: list[str],
    page: int,
    size: int,
) -> tuple[int, list[StateRecord]]:
    """One page of a template node's states in a run (oldest first, optionally only some statuses) and
    how many match in all; a 404 for a run not in `namespace`."""
    async with ctx.storage.reader() as tx:
        await run_in(tx, namespace, run_id)
        total, states = await tx.states_of_node(run_id, identifier, statuses, (page - 1) * size, size)
        return total, await tx.with_full_lineage(states)


async def failed_states(ctx: EngineContext, namespace: str, run_id: str, limit: int) -> tuple[int, list[StateRecord]]:
    """How many of a run's states failed for good, and the first `limit` of them; a 404 for a run not in
    `namespace`."""
    async with ctx.storage.reader() as tx:
        await run_in(tx, namespace, run_id)
        return await tx.failed_states_of_run(run_id, limit)


async def run_attempts(
    ctx: EngineContext, namespace: str, run_id: str, limit: int
) -> tuple[RunRecord, int, list[AttemptRecord]]:
    """The run, how many of its states were claimed, and the first `limit` by claim time (a timeline)."""
    async with ctx.storage.reader() as tx:
        run = await run_in(tx, namespace, run_id)
        total, attempts = await tx.attempts_of_run(run_id, limit)
    return run, total, attempts


async def state_detail(ctx: EngineContext, namespace: str, state_id: str, same_position_limit: int) -> StateDetail:
    """A state of a run of `namespace`, with up to `same_position_limit` attempts at the same place."""
    async with ctx.storage.reader() as tx:
        state = await tx.get_state(state_id)
        run = await tx.get_run(state.run_id) if state is not None else None
        if state is None or run is None or run.namespace != namespace:
            raise NotFound(f"State {state_id} not found in namespace {namespace}")
        same_position = await tx.states_at_same_position(state, same_position_limit)
        state = (await tx.with_full_lineage([state]))[0]
    return StateDetail(state, run, same_position)
