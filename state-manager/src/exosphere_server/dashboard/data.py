"""What the dashboard shows, read from storage: per-node status counts, pages of states, a state's attempts.

Nothing here returns a graph's secrets: templates are reduced to their drawing and secret *names*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.errors import NotFound
from exosphere_server.engine.runs import RunSummary, list_runs
from exosphere_server.storage.records import GraphRecord, RunCounts, RunRecord, StateRecord

# How a state's status is drawn; a node takes the most urgent phase among its states (PHASE_PRIORITY).
PHASE_OF_STATUS = {
    "CREATED": "waiting",
    "QUEUED": "running",
    "EXECUTED": "running",
    "SUCCESS": "success",
    "PRUNED": "pruned",
    "ERRORED": "errored",
    "NEXT_CREATED_ERROR": "errored",
    "RETRY_CREATED": "retried",
}
PHASES = ("success", "pruned", "running", "waiting", "errored", "retried")
PHASE_PRIORITY = ("errored", "running", "waiting", "success", "pruned", "retried")
ALL_STATUSES = tuple(PHASE_OF_STATUS)
RUN_STATUSES = ("PENDING", "SUCCESS", "FAILED")
SAME_POSITION_LIMIT = 100


@dataclass
class NodeProgress:
    """One template node's states in a run, counted by status."""

    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def phases(self) -> dict[str, int]:
        counts = dict.fromkeys(PHASES, 0)
        for status, count in self.by_status.items():
            counts[PHASE_OF_STATUS.get(status, "waiting")] += count
        return counts

    @property
    def phase(self) -> str:
        phases = self.phases
        return next((p for p in PHASE_PRIORITY if phases[p] > 0), "none")

    def view(self) -> dict[str, Any]:
        return {"total": self.total, "phase": self.phase, "phases": self.phases, "by_status": self.by_status}


@dataclass
class RunProgress:
    run: RunRecord
    nodes: dict[str, NodeProgress]

    @property
    def counts(self) -> RunCounts:
        counts = RunCounts()
        for node in self.nodes.values():
            for status, count in node.by_status.items():
                counts.add(status, count)
        return counts

    def view(self) -> dict[str, Any]:
        """The live-update payload (also sent over SSE): small whatever the run's size."""
        summary = RunSummary(self.run, self.counts)
        totals = NodeProgress()
        for node in self.nodes.values():
            for status, count in node.by_status.items():
                totals.by_status[status] = totals.by_status.get(status, 0) + count
        return {
            "run_id": self.run.run_id,
            "status": summary.status,
            "finished": summary.finished,
            "total": totals.total,
            "phases": totals.phases,
            "by_status": totals.by_status,
            "nodes": {identifier: node.view() for identifier, node in sorted(self.nodes.items())},
        }


@dataclass
class TemplateView:
    """A template as the dashboard draws it; secrets reduced to their names."""

    namespace: str
    name: str
    version: int
    nodes: list[dict[str, Any]]
    secret_names: list[str]
    validation_status: str
    validation_errors: list[str]
    validation_warnings: list[str]
    retry_policy: dict[str, Any]
    store_config: dict[str, Any]
    triggers: list[dict[str, Any]]
    updated_at: int

    @classmethod
    def of(cls, graph: GraphRecord) -> TemplateView:
        return cls(
            namespace=graph.namespace,
            name=graph.name,
            version=graph.version,
            nodes=graph.nodes,
            secret_names=sorted(graph.secrets),
            validation_status=graph.validation_status,
            validation_errors=list(graph.validation_errors),
            validation_warnings=list(graph.validation_warnings),
            retry_policy=graph.retry_policy,
            store_config=graph.store_config,
            triggers=graph.triggers,
            updated_at=graph.updated_at,
        )


async def namespaces(ctx: EngineContext) -> dict[str, tuple[int, int, int]]:
    async with ctx.storage.reader() as tx:
        return await tx.dashboard_namespaces()


async def templates(ctx: EngineContext, namespace: str) -> list[TemplateView]:
    async with ctx.storage.reader() as tx:
        return [TemplateView.of(g) for g in await tx.list_graphs(namespace)]


async def template(ctx: EngineContext, namespace: str, name: str) -> TemplateView:
    async with ctx.storage.reader() as tx:
        graph = await tx.get_graph(namespace, name)
    if graph is None:
        raise NotFound(f"Graph template {name} not found in namespace {namespace}")
    return TemplateView.of(graph)


@dataclass
class RunsPage:
    total: int
    runs: list[RunSummary]


async def runs_page(
    ctx: EngineContext,
    namespace: str,
    *,
    graph_name: str | None,
    status: str | None,
    created_from: int | None,
    created_to: int | None,
    page: int,
    size: int,
) -> RunsPage:
    total, summaries = await list_runs(
        ctx, namespace, page, size, graph_name, status=status, created_from=created_from, created_to=created_to
    )
    return RunsPage(total, summaries)


async def _run_in(ctx: EngineContext, namespace: str, run_id: str) -> RunRecord:
    async with ctx.storage.reader() as tx:
        run = await tx.get_run(run_id)
    if run is None or run.namespace != namespace:
        raise NotFound(f"Run {run_id} not found in namespace {namespace}")
    return run


async def run_progress(ctx: EngineContext, namespace: str, run_id: str) -> RunProgress:
    """A run's states counted per (template node, status): one GROUP BY, whatever the run's size."""
    run = await _run_in(ctx, namespace, run_id)
    async with ctx.storage.reader() as tx:
        rows = await tx.dashboard_status_counts(run_id)
    nodes: dict[str, NodeProgress] = {}
    for identifier, status, count in rows:
        nodes.setdefault(identifier, NodeProgress()).by_status[status] = count
    return RunProgress(run, nodes)


async def run_template_nodes(ctx: EngineContext, run: RunRecord) -> list[dict[str, Any]]:
    """The template nodes of the version the run was triggered with (a later upsert never changes it)."""
    async with ctx.storage.reader() as tx:
        version = await tx.get_graph_version(run.namespace, run.graph_name, run.graph_version)
    return version.nodes if version is not None else []


async def node_states(
    ctx: EngineContext, namespace: str, run_id: str, identifier: str, statuses: list[str], page: int, size: int
) -> tuple[int, list[StateRecord]]:
    await _run_in(ctx, namespace, run_id)
    async with ctx.storage.reader() as tx:
        return await tx.dashboard_node_states(run_id, identifier, statuses, (page - 1) * size, size)


@dataclass
class StateDetail:
    state: StateRecord
    run: RunRecord
    same_position: list[StateRecord]


async def state_detail(ctx: EngineContext, namespace: str, state_id: str) -> StateDetail:
    """A state of a run of `namespace`, with the other attempts at the same place in the run."""
    async with ctx.storage.reader() as tx:
        state = await tx.get_state(state_id)
        run = await tx.get_run(state.run_id) if state is not None else None
        if state is None or run is None or run.namespace != namespace:
            raise NotFound(f"State {state_id} not found in namespace {namespace}")
        same_position = await tx.dashboard_same_position(state, SAME_POSITION_LIMIT)
    return StateDetail(state, run, same_position)
