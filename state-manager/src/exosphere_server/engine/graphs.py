"""Graph templates: upsert with synchronous validation, versions, registrations, and their cron schedules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel

from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.cron import next_occurrence
from exosphere_server.engine.errors import GraphInvalid, NotFound
from exosphere_server.engine.graph_shape import GraphShape, GraphStructureError, analyse_graph
from exosphere_server.engine.node_checks import RegisteredNode, check_registrations
from exosphere_server.storage.base import Tx, now_ms
from exosphere_server.storage.records import (
    CronScheduleRecord,
    GraphRecord,
    GraphVersionRecord,
    RegisteredNodeRecord,
)


def graph_not_found(namespace: str, graph_name: str) -> NotFound:
    return NotFound(f"Graph template {graph_name} not found in namespace {namespace}")


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
) -> GraphRecord:
    """Validate and store a new version of a graph; the answer carries the final validation status.

    Structural problems raise `GraphInvalid` and write nothing. Problems that need registered nodes
    make the graph INVALID (stored, with every reason); unregistered nodes are listed as warnings.
    """
    try:
        shape = analyse_graph(nodes, store_config, secrets)
    except GraphStructureError as exc:
        raise GraphInvalid(exc.errors) from exc
    encrypted = {name: ctx.box.encrypt(value) for name, value in secrets.items()}
    now = now_ms()
    async with ctx.storage.transaction() as tx:
        existing = await tx.get_graph(namespace, graph_name, for_update=True)
        status, errors, warnings = await _registration_status(tx, shape, secrets.keys())
        record = GraphRecord(
            namespace=namespace,
            name=graph_name,
            version=(existing.version + 1) if existing else 1,
            nodes=[n.model_dump(mode="json") for n in nodes],
            secrets=encrypted,
            retry_policy=retry_policy.model_dump(mode="json"),
            store_config=store_config.model_dump(mode="json"),
            triggers=triggers,
            validation_status=status,
            validation_errors=errors,
            validation_warnings=warnings,
            created_at=existing.created_at if existing else now,
            updated_at=now,
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
            )
        )
        await sync_cron_schedules(tx, record)
    return record


async def get_graph(ctx: EngineContext, namespace: str, graph_name: str) -> GraphRecord:
    async with ctx.storage.reader() as tx:
        record = await tx.get_graph(namespace, graph_name)
    if record is None:
        raise graph_not_found(namespace, graph_name)
    return record


async def list_graphs(ctx: EngineContext, namespace: str) -> list[GraphRecord]:
    async with ctx.storage.reader() as tx:
        return await tx.list_graphs(namespace)


async def register_nodes(
    ctx: EngineContext, namespace: str, runtime_name: str, nodes: Sequence[Mapping[str, Any]]
) -> None:
    """Upsert registrations (race-free across runtimes), then re-validate every graph that uses them."""
    now = now_ms()
    async with ctx.storage.transaction() as tx:
        for node in nodes:
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
        touched = {(namespace, node["name"]) for node in nodes}
        for graph in await tx.list_graphs():
            if any((n["namespace"], n["node_name"]) in touched for n in graph.nodes):
                await _revalidate(tx, graph)


async def _revalidate(tx: Tx, graph: GraphRecord) -> None:
    store_config = StoreConfigModel.model_validate(graph.store_config)
    shape = analyse_graph([GraphNodeModel.model_validate(n) for n in graph.nodes], store_config, {})
    status, errors, warnings = await _registration_status(tx, shape, graph.secrets.keys())
    if (status, errors, warnings) != (graph.validation_status, graph.validation_errors, graph.validation_warnings):
        await tx.set_graph_validation(graph.namespace, graph.name, status, errors, warnings)
        graph.validation_status = status
        await sync_cron_schedules(tx, graph)


async def _registration_status(tx: Tx, shape: GraphShape, secret_names: Any) -> tuple[str, list[str], list[str]]:
    pairs = {(node.namespace, node.node_name) for node in shape.nodes.values()}
    found = await tx.get_registered_nodes(pairs)
    registered = {
        (r.name, r.namespace): RegisteredNode(r.name, r.namespace, r.inputs_schema, r.outputs_schema, r.secrets)
        for r in found.values()
    }
    report = check_registrations(shape, registered, set(secret_names))
    return ("INVALID" if report.errors else "VALID"), report.errors, report.warnings


async def sync_cron_schedules(tx: Tx, graph: GraphRecord) -> None:
    """A valid graph has one schedule per distinct expression; any other graph has none (no orphans)."""
    # Locked: a replica firing this schedule right now either finishes first (and we keep the
    # advanced time) or waits for us; it never fires the same occurrence twice.
    existing = {s.expression: s for s in await tx.cron_schedules_of(graph.namespace, graph.name, for_update=True)}
    schedules: list[CronScheduleRecord] = []
    if graph.validation_status == "VALID":
        now = datetime.now(UTC)
        for trigger in graph.triggers:
            expression = trigger["value"]["expression"]
            if any(s.expression == expression for s in schedules):
                continue
            kept = existing.get(expression)
            next_fire_at = kept.next_fire_at if kept else int(next_occurrence(expression, now).timestamp() * 1000)
            schedules.append(CronScheduleRecord(graph.namespace, graph.name, expression, trigger, next_fire_at))
    if schedules or existing:
        await tx.replace_cron_schedules(graph.namespace, graph.name, schedules)
