"""Read-only views for people and scripts inspecting runs (the CLI): one state, a run's progress."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request

from exosphere_server.api.deps import engine_context
from exosphere_server.api.views import run_view, state_view
from exosphere_server.engine import runs

router = APIRouter()
RunStatus = Literal["PENDING", "SUCCESS", "FAILED"]


@router.get("/namespace/{namespace_name}/state/{state_id}")
async def get_state(namespace_name: str, state_id: str, request: Request) -> dict[str, Any]:
    return state_view(await runs.get_state(engine_context(request), namespace_name, state_id))


@router.get("/namespace/{namespace_name}/run/{run_id}/progress")
async def run_progress(namespace_name: str, run_id: str, request: Request) -> dict[str, Any]:
    """The run's summary plus, per node identifier, how many of its states are in each status."""
    ctx = engine_context(request)
    summary = await runs.run_summary(ctx, namespace_name, run_id)  # the 404 for an unknown run
    async with ctx.storage.reader() as tx:
        rows = await tx.run_progress(run_id)
    nodes: dict[str, dict[str, Any]] = {}
    for identifier, node_name, status, count in rows:
        entry = nodes.setdefault(identifier, {"identifier": identifier, "node_name": node_name, "counts": {}})
        entry["counts"][status] = count
    return {
        **run_view(summary),
        "namespace": summary.run.namespace,
        "finished": summary.finished,
        "nodes": list(nodes.values()),
    }

