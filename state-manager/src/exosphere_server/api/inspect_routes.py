"""Read-only views for people and scripts inspecting runs (the CLI): one state, a run's progress."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request

from exosphere_server.api.deps import engine_context
from exosphere_server.api.views import run_progress_view, state_view
from exosphere_server.engine import inspection, runs

router = APIRouter()
RunStatus = Literal["PENDING", "SUCCESS", "FAILED"]


@router.get("/namespace/{namespace_name}/state/{state_id}")
async def get_state(namespace_name: str, state_id: str, request: Request) -> dict[str, Any]:
    return state_view(await runs.get_state(engine_context(request), namespace_name, state_id))


@router.get("/namespace/{namespace_name}/run/{run_id}/progress")
async def run_progress(namespace_name: str, run_id: str, request: Request) -> dict[str, Any]:
    """The run's summary plus, per node identifier, how many of its states are in each status."""
    return run_progress_view(await inspection.run_state_counts(engine_context(request), namespace_name, run_id))
