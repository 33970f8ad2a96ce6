"""What the dashboard shows, read through the engine: per-node status counts, pages of states, a state's attempts.

Nothing here returns a graph's secrets: templates are reduced to their drawing and secret *names*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exosphere_server.engine import graphs, inspection
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.run_counts import RunStateCounts, RunSummary
from exosphere_server.engine.runs import list_runs
from exosphere_server.storage.records import GraphRecord, RunCounts, RunRecord

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

    @classmethod
    def of(cls, counted: RunStateCounts) -> RunProgress:
        nodes: dict[str, NodeProgress] = {}
        for c in counted.counts:
            by_status = nodes.setdefault(c.identifier, NodeProgress()).by_status
            by_status[c.status] = by_status.get(c.status, 0) + c.count
        return cls(counted.run, nodes)

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


async def templates(ctx: EngineContext, namespace: str) -> list[TemplateView]:
    return [TemplateView.of(g) for g in await graphs.list_graphs(ctx, namespace)]


async def template(ctx: EngineContext, namespace: str, name: str) -> TemplateView:
    return TemplateView.of(await graphs.get_graph(ctx, namespace, name))


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


async def run_progress(ctx: EngineContext, namespace: str, run_id: str) -> RunProgress:
    return RunProgress.of(await inspection.run_state_counts(ctx, namespace, run_id))


async def state_detail(ctx: EngineContext, namespace: str, state_id: str) -> inspection.StateDetail:
    return await inspection.state_detail(ctx, namespace, state_id, SAME_POSITION_LIMIT)
