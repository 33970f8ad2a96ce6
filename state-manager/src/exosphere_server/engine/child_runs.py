"""Child graphs: a node that names a graph (`graph_name`) runs that graph as a child run of its state.

A state of such a node is inserted AWAITING_CHILD, whichever transition made it (a result's next
states, a retry, a unite), and its child run starts in the same transaction. The state holds no
runtime and no lease meanwhile. When the child run ends, in the transaction of its last state's end,
the state ends with it: SUCCESS with the child's final outputs (and its next states made), or, for a
child run that failed or was cancelled, a failed attempt through the retry policy, whose retry starts
a new child run. Both happen in :func:`settle`, a step every write transaction runs before its
commit, so no transition has to remember them and a crash loses neither (all or nothing).

Across PostgreSQL replicas, the end of a child run is decided under the parent state's row lock:
the transactions ending a child run's last two states take it in turn, and the second one reads the
first one's commit, so exactly one of them sees no pending state left.

Example::

    ctx.storage.add_commit_step(functools.partial(settle, ctx))  # done by EngineContext
    # a node {"graph_name": "summarise", "inputs": {"text": "${{ split.outputs.chunk }}"}} is reached:
    # its state is AWAITING_CHILD and a run of "summarise" records it as its parent state
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

from exospherehost.statuses import RunStatus, StateStatus

from exosphere_server.clock import now_ms
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.errors import EngineError
from exosphere_server.engine.next_states import Finished, NextStateError, create_children, evaluate_unites_of
from exosphere_server.engine.runs import start_child_run
from exosphere_server.engine.transitions import fail_state, run_and_graph
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import RunRecord, StateRecord

_S = StateStatus


def final_outputs(states: Sequence[StateRecord]) -> dict[str, str]:
    """A parent state's outputs from the states that ended its child run: one state's outputs as they
    are; for several (a fan-out ending), each field the JSON list of its values, one per state (null
    where a state lacks it), in the same state order for every field (fan-out siblings have none).

    Example::

        final_outputs([s1])      # {"summary": "short"}
        final_outputs([s1, s2])  # {"summary": '["short", "shorter"]'}
    """
    if len(states) == 1:
        return {key: _text(value) for key, value in states[0].outputs.items()}
    fields = list(dict.fromkeys(key for state in states for key in state.outputs))
    return {key: json.dumps([state.outputs.get(key) for state in states]) for key in fields}


def _text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


async def settle(ctx: EngineContext, tx: Tx) -> None:
    """The commit step: start the child runs of the states this transaction made AWAITING_CHILD, and end
    the parent states of the child runs it ended; again until neither is left (a parent that ends may
    end its own run, itself a child, or start new child runs)."""
    while tx.children_to_start or tx.runs_with_ended_states:
        to_start, tx.children_to_start = tx.children_to_start, []
        for state in to_start:
            await _start(ctx, tx, state)
        ended, tx.runs_with_ended_states = tx.runs_with_ended_states, set()
        await _end_parents(ctx, tx, ended)


async def _start(ctx: EngineContext, tx: Tx, state: StateRecord) -> None:
    run, graph = await run_and_graph(tx, ctx, state.run_id)
    graph_name = graph.shape.nodes[state.identifier].graph_name
    assert graph_name is not None
    try:
        await start_child_run(tx, ctx, run, state, graph_name)
    except EngineError as exc:
        # The graph changed since the parent's upsert checked it: no new attempt can mend that.
        error = f"Child graph {graph_name} could not start: {exc.message}"
        await fail_state(tx, graph, run, state, error, retryable=False)


async def _end_parents(ctx: EngineContext, tx: Tx, run_ids: Collection[str]) -> None:
    children = [run for run in await _runs(ctx, tx, run_ids) if run.parent_state_id is not None]
    if not children:
        return
    await tx.write_counts()  # the counts read below must hold this transaction's own moves
    # Locked before the counts are read: see the module's note on replicas.
    parents = await tx.lock_states(sorted({run.parent_state_id for run in children if run.parent_state_id}))
    counts = await tx.run_counts([run.run_id for run in children])
    finished: list[Finished] = []
    for child in children:
        parent = parents.get(child.parent_state_id or "")
        child_counts = counts[child.run_id]
        if parent is None or parent.status != _S.AWAITING_CHILD or child_counts.pending:
            continue  # still running; or its parent ended already (cancelled, or an older attempt)
        status = child_counts.status
        if status == RunStatus.SUCCESS:
            await _succeed(ctx, tx, parent, child, finished)
        else:
            parent_run, graph = await run_and_graph(tx, ctx, parent.run_id)
            await fail_state(tx, graph, parent_run, parent, await _failure(tx, child, status), finished=finished)
    await evaluate_unites_of(finished, tx)


async def _runs(ctx: EngineContext, tx: Tx, run_ids: Collection[str]) -> list[RunRecord]:
    """The runs, from the cache when there (a completion just read its run): no query on the hot path."""
    found: list[RunRecord] = []
    missing: list[str] = []
    for run_id in run_ids:
        cached = ctx.runs.get(run_id)
        if cached is None:
            missing.append(run_id)
        else:
            found.append(cached[0])
    return found + await tx.get_runs(missing)


async def _succeed(ctx: EngineContext, tx: Tx, parent: StateRecord, child: RunRecord, finished: list[Finished]) -> None:
    """The parent state ends like a reported result: its outputs recorded, its next states made."""
    parent_run, graph = await run_and_graph(tx, ctx, parent.run_id)
    _, child_graph = await run_and_graph(tx, ctx, child.run_id)
    last_nodes = [ident for ident, node in child_graph.shape.nodes.items() if not node.next_nodes]
    was = parent.status
    parent.outputs = final_outputs(await tx.ending_states(child.run_id, last_nodes))
    try:
        next_states = await create_children(tx, graph, parent_run, [parent])
        parent.status, parent.error = _S.SUCCESS.value, None
    except NextStateError as exc:
        next_states, parent.status, parent.error = [], _S.NEXT_CREATED_ERROR.value, str(exc)
    parent.finished_at = now_ms()
    await tx.finish_states([(was, parent)])
    await tx.insert_states(next_states)
    finished.append(Finished(graph, parent_run, [parent]))


async def _failure(tx: Tx, child: RunRecord, status: RunStatus) -> str:
    """The error of a parent state whose child run failed or was cancelled: the child's first error."""
    if status == RunStatus.CANCELLED:
        cancellation = await tx.get_run_cancellation(child.run_id)
        reason = f" ({cancellation.reason})" if cancellation is not None and cancellation.reason else ""
        return f"Child run {child.run_id} of graph {child.graph_name} was cancelled{reason}"
    _count, failed = await tx.failed_states_of_run(child.run_id, 1)
    first = f": {failed[0].node_name}: {failed[0].error}" if failed else ""
    return f"Child run {child.run_id} of graph {child.graph_name} failed{first}"
