"""What the dashboard shows, read through the engine: per-node status counts, pages of states, a state's attempts.

Nothing here returns a graph's secrets: templates are reduced to their drawing and secret *names*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exospherehost.statuses import PHASE, RETRYABLE_BY_HAND, Phase, RunStatus, StateStatus

from exosphere_server.engine import graphs, inspection
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.run_counts import RunStateCounts, RunSummary
from exosphere_server.engine.runs import list_runs
from exosphere_server.storage.records import (
    AttemptRecord,
    GraphRecord,
    RunCounts,
    RunRecord,
    StateRecord,
    UsageTotals,
)

# A state is drawn in the colour of its phase (`exospherehost.statuses.PHASE`; dashboard.css has one
# colour per phase). PHASES is the order of the stacked bars; a node takes the most urgent phase among
# its states (PHASE_PRIORITY), which is also the order of its summary line. Each names every phase.
PHASES = (Phase.SUCCESS, Phase.PRUNED, Phase.RUNNING, Phase.WAITING, Phase.ERRORED, Phase.RETRIED, Phase.CANCELLED)
PHASE_PRIORITY = (
    Phase.ERRORED,
    Phase.RUNNING,
    Phase.WAITING,
    Phase.CANCELLED,
    Phase.SUCCESS,
    Phase.PRUNED,
    Phase.RETRIED,
)
PHASE_LABELS = {
    Phase.SUCCESS: "done",
    Phase.RUNNING: "running",
    Phase.WAITING: "waiting",
    Phase.ERRORED: "failed",
    Phase.PRUNED: "pruned",
    Phase.RETRIED: "retried",
    Phase.CANCELLED: "cancelled",
}
# The status filter lists statuses in the order of a state's life (the order of `Phase`).
ALL_STATUSES = tuple(sorted(StateStatus, key=lambda status: list(Phase).index(PHASE[status])))
RUN_STATUSES = tuple(RunStatus)
# What dashboard.js knows of statuses, rendered into every page (base.html): never a hand-written copy.
PAGE_STATUSES = {
    "phases": list(PHASES),
    "priority": list(PHASE_PRIORITY),
    "labels": PHASE_LABELS,
    "retryable_by_hand": sorted(RETRYABLE_BY_HAND),
}
SAME_POSITION_LIMIT = 100
FAILED_SHOWN = 100  # failed states listed on a run's page; the node panel pages through the rest
TIMELINE_LIMIT = 5000  # attempts one timeline draws (the earliest claimed)


@dataclass
class NodeProgress:
    """One template node's states in a run, counted by status."""

    by_status: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.by_status.values())

    @property
    def phases(self) -> dict[Phase, int]:
        counts = dict.fromkeys(PHASES, 0)
        for status, count in self.by_status.items():
            counts[PHASE[status]] += count
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
    finished_at: int | None = None  # when the run's last state ended, once nothing is pending
    usage: dict[str, UsageTotals] = field(default_factory=dict)  # what each node's attempts reported using

    @classmethod
    def of(cls, counted: RunStateCounts) -> RunProgress:
        nodes: dict[str, NodeProgress] = {}
        for c in counted.counts:
            by_status = nodes.setdefault(c.identifier, NodeProgress()).by_status
            by_status[c.status] = by_status.get(c.status, 0) + c.count
        return cls(counted.run, nodes, counted.summary.finished_at, dict(counted.usage))

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
        total_usage = UsageTotals()
        for used in self.usage.values():
            total_usage.add(used)
        totals = NodeProgress()
        for node in self.nodes.values():
            for status, count in node.by_status.items():
                totals.by_status[status] = totals.by_status.get(status, 0) + count
        return {
            "run_id": self.run.run_id,
            "status": summary.status,
            "finished": summary.finished,
            "created_at": self.run.created_at,
            "finished_at": self.finished_at,
            "total": totals.total,
            "phases": totals.phases,
            "by_status": totals.by_status,
            "nodes": {identifier: node.view() for identifier, node in sorted(self.nodes.items())},
            # Only the nodes that reported any; `total` is the run's.
            "usage": {
                "total": total_usage.view(),
                "nodes": {identifier: used.view() for identifier, used in sorted(self.usage.items()) if used.anything},
            },
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


@dataclass
class Failures:
    """A run's states that failed for good: how many, and the first FAILED_SHOWN of them."""

    total: int
    states: list[StateRecord]


async def failures(ctx: EngineContext, namespace: str, run_id: str) -> Failures:
    return Failures(*await inspection.failed_states(ctx, namespace, run_id, FAILED_SHOWN))


def timeline_view(
    namespace: str, run: RunRecord, total: int, attempts: list[AttemptRecord], now: int
) -> dict[str, Any]:
    """The run's timeline as dashboard.js draws it: one bar per attempt (claim to result, or to `now`
    while it runs), nodes in the order the run first reached them."""
    return {
        "run_id": run.run_id,
        "created_at": run.created_at,
        "now": now,
        "total": total,
        "attempts": [
            {
                "id": a.id,
                "identifier": a.identifier,
                "node_name": a.node_name,
                "status": a.status,
                "phase": PHASE[a.status],
                "retry_count": a.retry_count,
                "start": a.started_at,
                "end": a.finished_at,
                "runtime": a.runtime_name,
                "error": (a.error or "")[:200] or None,
                "url": f"/dashboard/ns/{namespace}/states/{a.id}",
            }
            for a in attempts
        ],
    }


async def state_detail(ctx: EngineContext, namespace: str, state_id: str) -> inspection.StateDetail:
    return await inspection.state_detail(ctx, namespace, state_id, SAME_POSITION_LIMIT)
