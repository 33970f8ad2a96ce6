"""What follows a state: its children after `executed`, and `unites` states once a target's descendants are done.

Everything here runs inside the transaction of the transition that caused it (DESIGN §2.1): the
children exist, or the failure is recorded, in the same commit as the result.
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exospherehost.models import UnitesStrategyEnum
from exospherehost.statuses import UNITE_ALL_DONE_WAITS_ON, UNITE_ALL_SUCCESS_WAITS_ON, StateStatus

from exosphere_server.clock import now_ms
from exosphere_server.engine.carried_outputs import carry
from exosphere_server.engine.context import PinnedGraph
from exosphere_server.engine.fingerprint import unite_fingerprint
from exosphere_server.engine.limits import node_charges
from exosphere_server.engine.pacing import Pacer
from exosphere_server.engine.placeholders import OutputRef, PlaceholderError, Ref, StoreRef, parse_template, render
from exosphere_server.random_ids import random_uuid
from exosphere_server.storage.base import Tx, new_id
from exosphere_server.storage.payloads import ref_key
from exosphere_server.storage.records import RunRecord, StateRecord


class NextStateError(Exception):
    """A child's inputs could not be built; the executing states end `NEXT_CREATED_ERROR` with this text."""


def new_state(
    *,
    template_namespace: str,
    node_name: str,
    identifier: str,
    run: RunRecord,
    inputs: Mapping[str, object],
    parents: dict[str, str],
    parent_id: str | None = None,
    carried: dict[str, dict[str, object]] | None = None,
    enqueue_after: int | None = None,
    **extra: object,
) -> StateRecord:
    now = now_ms()
    record = StateRecord(
        id=new_id(),
        namespace=template_namespace,
        node_name=node_name,
        identifier=identifier,
        graph_name=run.graph_name,
        run_id=run.run_id,
        status=StateStatus.CREATED.value,
        inputs=dict(inputs),
        outputs={},
        parents=parents,
        parent_id=parent_id,
        carried=carried or {},
        enqueue_after=now if enqueue_after is None else enqueue_after,
        created_at=now,
        updated_at=now,
        fanout_id=random_uuid(),
        priority=run.priority,
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def initial_status(graph: PinnedGraph, identifier: str) -> str:
    """The status a new state of this node is inserted in: AWAITING_CHILD when the node names a graph
    (its child run starts before the commit, `child_runs.settle`), else CREATED."""
    named = graph.shape.nodes[identifier].graph_name is not None
    return (StateStatus.AWAITING_CHILD if named else StateStatus.CREATED).value


def resolve_store(key: str, run: RunRecord, graph: PinnedGraph) -> str:
    if key in run.store:
        return run.store[key]
    if key in graph.store_config.default_values:
        return graph.store_config.default_values[key]
    raise NextStateError(f"Store value not found for key '{key}' in run {run.run_id}")


async def create_children(
    tx: Tx, graph: PinnedGraph, run: RunRecord, executed: list[StateRecord], pacer: Pacer | None = None
) -> list[StateRecord]:
    """Build every child of the executed states (original and fan-out siblings); raise NextStateError on any problem.

    Each child is built from its source state's row alone (its outputs and what it carries): the
    cost of a hop does not depend on how deep in the run it is. A wide fan-out builds thousands of
    children: `pacer` lets other requests in between them.
    """
    node = graph.shape.nodes[executed[0].identifier]
    next_ids = [n for n in (node.next_nodes or []) if graph.shape.nodes[n].unites is None]
    if not next_ids:
        return []
    ancestors = await _ancestor_outputs(tx, executed[0])  # siblings share the original's lineage
    pacer = pacer or Pacer()
    children: list[StateRecord] = []
    # What each child node takes from the graph, looked up once rather than once per branch. A child
    # that carries nothing of its source's own outputs carries the same values from every branch: one
    # object for all, which storage then encodes once.
    wanted = {child_id: graph.shape.carried.get(child_id, {}) for child_id in next_ids}
    own = executed[0].identifier
    shared_carried = {child_id: carry(fields, ancestors) for child_id, fields in wanted.items() if own not in fields}
    timeouts = {child_id: graph.timeout_ms(child_id) for child_id in next_ids}
    statuses = {child_id: initial_status(graph, child_id) for child_id in next_ids}
    for source in executed:
        await pacer.give_way()
        outputs = {**ancestors, source.identifier: source.outputs}
        parents = _kept_parents(graph, source)
        uncounted = source.id if source.identifier not in graph.shape.unite_targets else None
        for child_id in next_ids:
            child = graph.shape.nodes[child_id]
            inputs = await _resolve_inputs(tx, child.inputs, child_id, outputs, run, graph)
            limits = _limit_charges(graph, child_id, outputs, run)
            carried = shared_carried.get(child_id)
            children.append(
                new_state(
                    template_namespace=child.namespace,
                    node_name=child.node_name,
                    identifier=child_id,
                    run=run,
                    inputs=inputs,
                    parents=parents,
                    parent_id=source.id,
                    carried=carry(wanted[child_id], outputs) if carried is None else carried,
                    timeout_ms=timeouts[child_id],
                    limits=limits,
                    status=statuses[child_id],
                    uncounted_parent=uncounted,
                )
            )
    return children


def _limit_charges(
    graph: PinnedGraph, node_id: str, outputs: Mapping[str, Mapping[str, object]], run: RunRecord
) -> list[dict[str, Any]] | None:
    def resolve(text: str) -> str:
        try:
            value = _render_inputs({"value": text}, node_id, outputs, run, graph, {})["value"]
        except _PayloadNeeded:
            value = None
        if not isinstance(value, str):  # a large payload is no token count or bucket key
            raise NextStateError(f"A limit of node '{node_id}' refers to a value larger than a token count or key")
        return value

    return node_charges(graph, node_id, resolve, NextStateError)


def _kept_parents(graph: PinnedGraph, source: StateRecord) -> dict[str, str]:
    """A child's `parents`: the source's unite-target ancestors, then the source itself (its direct parent)."""
    kept = {ident: state_id for ident, state_id in source.parents.items() if ident in graph.shape.unite_targets}
    kept[source.identifier] = source.id
    return kept


def uncounted_parent(graph: PinnedGraph, parents: Mapping[str, str]) -> str | None:
    """The entry of a new state's `parents` that `descendant_counts` need not count it under: the one
    ancestor whose node no unite of the graph targets, so no unite ever asks for its descendants.

    A child keeps unite targets and its direct parent, a unite state its target's `parents` and the
    target: at most one entry is no target. None when every entry is one (all are counted), and for
    lineages of rows written before migration 0006 (several entries that are no target: all are still
    counted, as before; a count nobody reads costs a row, a missing one would stall a unite).

        uncounted_parent(graph, {"plan": "s1", "split": "s2"})  # "s2" when only 'plan' is united on
    """
    others = [state_id for ident, state_id in parents.items() if ident not in graph.shape.unite_targets]
    return others[0] if len(others) == 1 else None


async def _ancestor_outputs(tx: Tx, state: StateRecord) -> dict[str, dict[str, object]]:
    """Outputs of the state's ancestors that its children's placeholders may read: what it carries, or, for a
    state written before migration 0006 (no `parent_id`, whole ancestry in `parents`), its ancestors' rows."""
    if state.parent_id is not None or not state.parents:
        return state.carried
    found = {s.id: s for s in await tx.get_states(list(state.parents.values()))}
    return {ident: found[state_id].outputs for ident, state_id in state.parents.items() if state_id in found}


class _PayloadNeeded(Exception):
    """A placeholder embeds a value kept apart (a large payload) in longer text: its text must be read."""


async def _resolve_inputs(
    tx: Tx,
    template: Mapping[str, str],
    node_id: str,
    outputs: Mapping[str, Mapping[str, object]],
    run: RunRecord,
    graph: PinnedGraph,
) -> dict[str, object]:
    """A node's inputs from its template. An input that is one placeholder alone copies the value as
    stored, a large payload's reference included (nothing is read); one that embeds a large payload in
    longer text reads it."""
    try:
        return _render_inputs(template, node_id, outputs, run, graph, {})
    except _PayloadNeeded:
        keys = {ref_key(v) for values in outputs.values() for v in values.values() if isinstance(v, dict)}
        texts = await tx.payload_texts(run.run_id, keys)
        return _render_inputs(template, node_id, outputs, run, graph, texts)


def _render_inputs(
    template: Mapping[str, str],
    node_id: str,
    outputs: Mapping[str, Mapping[str, object]],
    run: RunRecord,
    graph: PinnedGraph,
    texts: Mapping[str, str],
) -> dict[str, object]:
    def found(ref: Ref) -> object:
        if isinstance(ref, StoreRef):
            return resolve_store(ref.key, run, graph)
        assert isinstance(ref, OutputRef)
        if ref.identifier not in outputs:
            raise NextStateError(
                f"Input of node '{node_id}' depends on '{ref.identifier}', which is not in its lineage"
            )
        value = outputs[ref.identifier].get(ref.field)
        if value is None:
            raise NextStateError(f"Output field '{ref.field}' not found on state of node '{ref.identifier}'")
        if not isinstance(value, str | dict):
            raise NextStateError(f"Output field '{ref.field}' of node '{ref.identifier}' is not a string")
        return value

    def resolve(ref: Ref) -> str:
        value = found(ref)
        if isinstance(value, dict):  # a large payload's reference
            if ref_key(value) not in texts:
                raise _PayloadNeeded()
            return texts[ref_key(value)]
        assert isinstance(value, str)
        return value

    def fill(value: str) -> object:
        parsed = parse_template(value)
        if parsed.head == "" and len(parsed.parts) == 1 and parsed.parts[0][1] == "":
            return found(parsed.parts[0][0])  # the value itself, a payload's reference as it is
        return render(parsed, resolve)

    try:
        return {name: fill(value) for name, value in template.items()}
    except PlaceholderError as exc:
        raise NextStateError(f"Invalid input of node '{node_id}': {exc}") from exc


@dataclass(frozen=True)
class Finished:
    """States of one run that just reached a final status: what may complete a unite."""

    graph: PinnedGraph
    run: RunRecord
    states: Sequence[StateRecord]


async def evaluate_unites(tx: Tx, graph: PinnedGraph, run: RunRecord, finished: Sequence[StateRecord]) -> None:
    """Re-check every unite whose target lies on the lineage of a state that just reached a final status (D8)."""
    await evaluate_unites_of([Finished(graph, run, finished)], tx)


async def evaluate_unites_of(batches: Sequence[Finished], tx: Tx) -> None:
    """Re-check the unites of several runs' finished states at once (one transaction, many results).

    Every target state is locked first, in one statement ordered by id: the lock serialises each
    target's checks (two replicas finishing its last two descendants cannot both miss the other's
    commit), and one global order means two transactions never wait on each other's targets in a
    cycle. Then the deepest targets are checked first, so an inner unite exists (and is waited on)
    before the unite of an outer target counts what is left below it.
    """
    checks: dict[tuple[str, str], tuple[Finished, int]] = {}
    for batch in batches:
        shape = batch.graph.shape
        for state in batch.states:
            for unite_id in shape.unite_nodes:
                unites = shape.nodes[unite_id].unites
                assert unites is not None
                target_id = state.id if state.identifier == unites.identifier else state.parents.get(unites.identifier)
                if target_id is not None:
                    checks[(unite_id, target_id)] = (batch, shape.ancestors.count(unites.identifier))
    if not checks:
        return
    targets = await tx.lock_states(sorted({target_id for _, target_id in checks}))
    for (unite_id, target_id), (batch, _depth) in sorted(checks.items(), key=lambda item: -item[1][1]):
        found = targets.get(target_id)
        if found is not None and found.status == StateStatus.SUCCESS:
            await _fire_unite_if_ready(tx, batch.graph, batch.run, unite_id, found)


async def _fire_unite_if_ready(tx: Tx, graph: PinnedGraph, run: RunRecord, unite_id: str, target: StateRecord) -> None:
    node = graph.shape.nodes[unite_id]
    assert node.unites is not None
    all_success = node.unites.strategy == UnitesStrategyEnum.ALL_SUCCESS
    waiting_on = UNITE_ALL_SUCCESS_WAITS_ON if all_success else UNITE_ALL_DONE_WAITS_ON
    if await tx.has_descendants(target.id, waiting_on):
        return
    parents = {**target.parents, target.identifier: target.id}
    fingerprint = unite_fingerprint(
        node_name=node.node_name,
        namespace_name=node.namespace,
        identifier=unite_id,
        graph_name=run.graph_name,
        run_id=run.run_id,
        retry_count=0,
        parents=parents,
        manual_retry_fanout_id="",
    )
    lineage = {**await _ancestor_outputs(tx, target), target.identifier: target.outputs}
    error: str | None = None
    try:
        inputs = await _resolve_inputs(tx, node.inputs, unite_id, lineage, run, graph)
        limits = _limit_charges(graph, unite_id, lineage, run)
    except NextStateError as exc:
        # The unite state is still created, so the failure is visible on it rather than lost.
        inputs, limits, error = {}, None, str(exc)
    state = new_state(
        template_namespace=node.namespace,
        node_name=node.node_name,
        identifier=unite_id,
        run=run,
        inputs=inputs,
        parents=parents,
        parent_id=target.id,
        carried=carry(graph.shape.carried.get(unite_id, {}), lineage),
        does_unites=True,
        fingerprint=fingerprint,
        timeout_ms=graph.timeout_ms(unite_id),
        fanout_id=f"unite-{_random.token_hex(8)}",
        limits=limits,
        status=initial_status(graph, unite_id),
        uncounted_parent=uncounted_parent(graph, parents),
    )
    if error is not None:
        state.status, state.error, state.finished_at = StateStatus.NEXT_CREATED_ERROR.value, error, now_ms()
    await tx.insert_state_unless_duplicate(state)
