"""Read-only views for people and scripts inspecting runs (the CLI): one state, a run's progress."""

from __future__ import annotations

from exospherehost.contract import RunProgressResponse, StateResponse
from fastapi import APIRouter, Request
from starlette.responses import Response

from exosphere_server.api.deps import engine_context
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.views import run_progress_view, state_view
from exosphere_server.engine import inspection, runs

router = APIRouter()


@router.get("/namespace/{namespace_name}/state/{state_id}", response_model=StateResponse)
async def get_state(namespace_name: str, state_id: str, request: Request) -> Response:
    return SafeJSONResponse(state_view(await runs.get_state(engine_context(request), namespace_name, state_id)))


@router.get("/namespace/{namespace_name}/run/{run_id}/progress", response_model=RunProgressResponse)
async def run_progress(namespace_name: str, run_id: str, request: Request) -> Response:
    """The run's summary plus, per node identifier, how many of its states are in each status."""
    progress = await inspection.run_state_counts(engine_context(request), namespace_name, run_id)
    return SafeJSONResponse(run_progress_view(progress))
