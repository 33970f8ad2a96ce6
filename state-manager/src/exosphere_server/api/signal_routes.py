"""Signals sent to runs (additive, docs/wire-extensions.md "Waiting for a signal"): what wakes a state
that raised `WaitForSignal`."""

from __future__ import annotations

from typing import Annotated

from exospherehost.contract import SIGNAL_NAME_PATTERN, SendSignalResponse
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from exosphere_server.api.deps import engine_context
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.schemas import SendSignalRequest
from exosphere_server.engine import signal_waits

router = APIRouter()


@router.post("/namespace/{namespace_name}/run/{run_id}/signals/{name}", response_model=SendSignalResponse)
async def send_signal(
    namespace_name: str,
    run_id: str,
    name: Annotated[str, Path(pattern=SIGNAL_NAME_PATTERN, description="The signal's name, e.g. approval")],
    body: SendSignalRequest,
    request: Request,
) -> Response:
    """Send signal `name` to a run with a JSON object of string values: every state of the run waiting for
    it runs again with the payload as its `signal`, and a wait for it that starts later gets it at once.
    An unknown run is a `404`; a run that has ended a `409`; a body that is not an object of strings `422`."""
    woken = await signal_waits.send_signal(engine_context(request), namespace_name, run_id, name, body.root)
    return SafeJSONResponse({"run_id": run_id, "name": name, "woken": woken})
