"""Read-only views for people and scripts inspecting runs (the CLI): one state, a run's progress."""

from __future__ import annotations

from exospherehost.contract import RunProgressResponse, StateResponse
from fastapi import APIRouter, Query, Request
from starlette.responses import PlainTextResponse, Response

from exosphere_server.api.deps import engine_context
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.views import run_progress_view, state_view
from exosphere_server.engine import inspection, runs
from exosphere_server.engine.large_payloads import Side, payload_text, with_payloads

router = APIRouter()


@router.get("/namespace/{namespace_name}/state/{state_id}", response_model=StateResponse)
async def get_state(
    namespace_name: str,
    state_id: str,
    request: Request,
    payloads: bool = Query(
        default=False, description="Additive: put large inputs and outputs (kept apart) in inputs/outputs, whole"
    ),
) -> Response:
    ctx = engine_context(request)
    state = await runs.get_state(ctx, namespace_name, state_id)
    return SafeJSONResponse(state_view(await with_payloads(ctx, state) if payloads else state))


@router.get(
    "/namespace/{namespace_name}/state/{state_id}/payload/{side}/{field}",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The value, whole"}},
)
async def get_state_payload(namespace_name: str, state_id: str, side: Side, field: str, request: Request) -> Response:
    """Additive: one input or output value of a state as plain text, large payloads (kept apart) included."""
    ctx = engine_context(request)
    state = await runs.get_state(ctx, namespace_name, state_id)
    return PlainTextResponse(await payload_text(ctx, state, side, field))


@router.get("/namespace/{namespace_name}/run/{run_id}/progress", response_model=RunProgressResponse)
async def run_progress(namespace_name: str, run_id: str, request: Request) -> Response:
    """The run's summary plus, per node identifier, how many of its states are in each status."""
    progress = await inspection.run_state_counts(engine_context(request), namespace_name, run_id)
    return SafeJSONResponse(run_progress_view(progress))
