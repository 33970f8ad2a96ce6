"""Graph templates: upsert with synchronous validation, versions, registrations, and their cron schedules.

Validation is CPU work that grows with the graph (a template may have tens of thousands of nodes),
so it runs in a worker thread: the event loop keeps answering other requests meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel

from exosphere_server.clock import now_ms
from exosphere_server.engine.child_graph_checks import child_graph_errors
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.cron import next_occurrence
from exosphere_server.engine.errors import GraphInvalid, GraphTooLarge, NotFound
from exosphere_server.engine.graph_shape import GraphShape, GraphStructureError, analyse_graph
from exosphere_server.engine.limits import limited_node_refs
from exosphere_server.engine.node_checks import RegisteredNode, check_registrations
from exosphere_server.release import release_gradually
from exosphere_server.storage.base import Tx
from exosphere_server.storage.records import (
    CronScheduleRecord,
    GraphRecord,
    GraphVersionRecord,
    RegisteredNodeRecord,
)


def graph_not_found(namespace: str, graph_name: str) -> NotFound:
    return NotFound(f"Graph template {graph_name} not found in namespace {namespace}")


def ensure_graph_size(ctx: EngineContext, node_count: int) -> None:
    """Refuse a template with more nodes than this server accepts (the API checks before parsing it)."""
    if node_count > ctx.max_graph_nodes:
        raise GraphTooLarge(node_count, ctx.max_graph_nodes)


async def upsert_graph(
    ctx: EngineContext,
    namespace: str,
    graph_name: str,
    *,
    nodes: list[GraphNodeModel],
    secrets: Mapping[str, str],
    retry_policy: RetryPolicyModel,
    store_config: StoreConfigModel,
    triggers: list[dict[str, Any]],
    timeout_seconds: float | None = None,
    deadline_seconds: float | None = None,
    priority: int | None = None,
    budget: dict[str, Any] | None = None,
) -> GraphRecord:
    """Validate and store a new version of a graph; the answer carries the final validation status.

    Structural problems raise `GraphInvalid` and write nothing. Problems that need registered nodes
    make the graph INVALID (stored, with every reason); unregistered nodes are listed as warnings.
    """
    ensure_graph_size(ctx, len(nodes))
    trigger_errors = cron_trigger_errors(triggers, store_config)
    try:
        shape = await asyncio.to_thread(analyse_graph, nodes, store_config, secrets)
    except GraphStructureError as exc:
        raise GraphInvalid(exc.errors + trigger_errors) from exc
    if trigger_errors:
        raise GraphInvalid(trigger_errors)
    encrypted = {name: ctx.box.encrypt(value) for name, value in secrets.items()}
    node_dicts = await asyncio.to_thread(lambda: [n.model_dump(mode="json") for n in nodes])
    now = now_ms()
    async with ctx.storage.transaction() as tx:
        child_errors = await child_graph_errors(tx, namespace, graph_name, shape)
        if child_errors:
            raise GraphInvalid(child_errors)
        existing = await tx.lock_graph_version(namespace, graph_name)
        status, errors, warnings = await _registration_status(tx, shape, secrets.keys())
        record = GraphRecord(
            namespace=namespace,
            name=graph_name,
            version=(existing[0] + 1) if existing else 1,
            nodes=node_dicts,
            secrets=encrypted,
            retry_policy=retry_policy.model_dump(mode="json"),
            store_config=store_config.model_dump(mode="json"),
            triggers=triggers,
            validation_status=status,
            validation_errors=errors,
            validation_warnings=warnings,
            created_at=existing[1] if existing else now,
            updated_at=now,
            timeout_seconds=timeout_seconds,
            deadline_seconds=deadline_seconds,
            priority=priority,
            budget=budget,
        )
        await tx.save_graph(record)
        await tx.insert_graph_version(
            GraphVersionRecord(
                namespace=namespace,
                name=graph_name,
                version=record.version,
                nodes=record.nodes,
                retry_policy=record.retry_policy,
                store_config=record.store_config,
                created_at=now,
                timeout_seconds=timeout_seconds,
                deadline_seconds=deadline_seconds,
                priority=priority,
                budget=budget,
            )
        )
        await tx.replace_graph_node_refs(namespace, graph_name, await asyncio.to_thread(_node_refs, shape))
        limited = limited_node_refs(list(shape.nodes.values()))
        await tx.mark_limited_nodes(limited)
        await sync_cron_schedules(tx, record)
    ctx.limited.learn(limited)
    await asyncio.to_thread(release_gradually, shape)  # not all at once on the loop (see release.py)
    return record


def cron_trigger_errors(triggers: Iterable[Mapping[str, Any]], store_config: StoreConfigModel) -> list[str]:
    """A cron run has no caller to supply the store: each required key needs a value in the trigger or a default."""
    errors: list[str] = []
    for trigger in triggers:
        value = trigger["value"]
        provided = set(value.get("store") or {}) | set(store_config.default_values)
        missing = [key for key in store_config.required_keys if key not in provided]
        if missing:
            keys = ", ".join(f"'{key}'" for key in missing)
            errors.append(
                f"Cron trigger '{value['expression']}' gives no value for required store key(s) {keys}: "
                "set them in the trigger's store or in store_config.default_values"
            )
    return errors


def _node_refs(shape: GraphShape) -> set[tuple[str, str]]:
    return {(node.namespace, node.node_name) for node in shape.nodes.values() if node.graph_name is None}


async def get_graph(ctx: EngineContext, namespace: str, graph_name: str) -> GraphRecord:
    async with ctx.storage.reader() as tx:
        record = await tx.get_graph(namespace, graph_name)
    if record is None:
        raise graph_not_found(namespace, graph_name)
    return record


async def list_graphs(ctx: EngineContext, namespace: str) -> list[GraphRecord]:
    async with ctx.storage.reader() as tx:
        return await tx.list_graphs(namespace)


async def list_registered_nodes(ctx: EngineContext, namespace: str) -> list[RegisteredNodeRecord]:
    """The nodes registered in a namespace, by name."""
    async with ctx.storage.reader() as tx:
        return await tx.list_registered_nodes(namespace)


async def list_namespaces(ctx: EngineContext) -> list[str]:
    """Every namespace in which a runtime has registered nodes, by name."""
    async with ctx.storage.reader() as tx:
        return await tx.list_namespaces()


async def register_nodes(
    ctx: EngineContext, namespace: str, runtime_name: str, nodes: Sequence[Mapping[str, Any]]
) -> list[tuple[str, str]]:
    """Upsert registrations (race-free across runtimes), then re-validate the graphs whose checks can change.

    Only a new node or a changed schema (inputs, outputs, secrets) can change a graph's status, and
    only for graphs that use that node (found through the graph-to-node index). Every runtime start
    registers again, usually unchanged: that costs no re-validation at all. Returns the
    (namespace, name) of every graph re-validated.
    """
    now = now_ms()
    async with ctx.storage.transaction() as tx:
        stored = await tx.get_registered_nodes({(namespace, node["name"]) for node in nodes})
        changed: set[tuple[str, str]] = set()
        for node in nodes:
            previous = stored.get((namespace, node["name"]))
            schema = (node["inputs_schema"], node["outputs_schema"], list(node["secrets"]))
            if previous is None or (previous.inputs_schema, previous.outputs_schema, previous.secrets) != schema:
                changed.add((namespace, node["name"]))
            await tx.upsert_registered_node(
                RegisteredNodeRecord(
                    namespace=namespace,
                    name=node["name"],
                    runtime_name=runtime_name,
                    inputs_schema=node["inputs_schema"],
                    outputs_schema=node["outputs_schema"],
                    secrets=list(node["secrets"]),
                    created_at=now,
                    updated_at=now,
                )
            )
        affected = await tx.graphs_using_nodes(changed)
        for graph in await tx.get_graphs(affected):
            await _revalidate(tx, graph)
    return affected


async def _revalidate(tx: Tx, graph: GraphRecord) -> None:
    shape = await asyncio.to_thread(_stored_shape, graph)
    status, errors, warnings = await _registration_status(tx, shape, graph.secrets.keys())
    if (status, errors, warnings) != (graph.validation_status, graph.validation_errors, graph.validation_warnings):
        await tx.set_graph_validation(graph.namespace, graph.name, status, errors, warnings)
        graph.validation_status = status
        await sync_cron_schedules(tx, graph)


def _stored_shape(graph: GraphRecord) -> GraphShape:
    store_config = StoreConfigModel.model_validate(graph.store_config)
    return analyse_graph([GraphNodeModel.model_validate(n) for n in graph.nodes], store_config, {})


async def _registration_status(tx: Tx, shape: GraphShape, secret_names: Any) -> tuple[str, list[str], list[str]]:
    found = await tx.get_registered_nodes(await asyncio.to_thread(_node_refs, shape))
    registered = {
        (r.name, r.namespace): RegisteredNode(r.name, r.namespace, r.inputs_schema, r.outputs_schema, r.secrets)
        for r in found.values()
    }
    report = await asyncio.to_thread(check_registrations, shape, registered, set(secret_names))
    return ("INVALID" if report.errors else "VALID"), report.errors, report.warnings


async def sync_cron_schedules(tx: Tx, graph: GraphRecord) -> None:
    """A valid graph has one schedule per distinct expression; any other graph has none (no orphans)."""
    # Locked: a replica firing this schedule right now either finishes first (and we keep the
    # advanced time) or waits for us; it never fires the same occurrence twice.
    existing = {s.expression: s for s in await tx.cron_schedules_of(graph.namespace, graph.name, for_update=True)}
    schedules: dict[str, CronScheduleRecord] = {}
    if graph.validation_status == "VALID":
        now = datetime.now(UTC)
        for trigger in graph.triggers:
            expression = trigger["value"]["expression"]
            if expression in schedules:
                continue
            kept = existing.get(expression)
            next_fire_at = kept.next_fire_at if kept else int(next_occurrence(expression, now).timestamp() * 1000)
            schedules[expression] = CronScheduleRecord(graph.namespace, graph.name, expression, trigger, next_fire_at)
    if schedules or existing:
        await tx.replace_cron_schedules(graph.namespace, graph.name, list(schedules.values()))
