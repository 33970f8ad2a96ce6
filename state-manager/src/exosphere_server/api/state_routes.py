"""Runtimes' side of the wire: claims, results, signals, secrets (PROTOCOL §4.6–4.12) plus leases."""

from __future__ import annotations

from typing import Any

from exospherehost.contract import (
    EagerClaim,
    EnqueueResponse,
    ErroredResponse,
    ExecutedManyResponse,
    ExecutedResponse,
    HeartbeatResponse,
    ManualRetryResponse,
    PruneResponse,
    ReEnqueueAfterResponse,
    ReleaseResponse,
    SecretsResponse,
    Usage,
    WaitForSignalResponse,
)
from exospherehost.statuses import StateStatus
from fastapi import APIRouter, Request
from starlette.responses import Response

from exosphere_server.api.deps import engine_context
from exosphere_server.api.errors import status_code
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.schemas import (
    EnqueueRequest,
    ErroredRequest,
    ExecutedManyRequest,
    ExecutedRequest,
    HeartbeatRequest,
    ManualRetryRequest,
    PruneRequest,
    ReEnqueueAfterRequest,
    ReleaseRequest,
    WaitForSignalRequest,
)
from exosphere_server.api.views import claimed_state_view
from exosphere_server.engine import signal_waits, transitions

router = APIRouter()
STATE = "/namespace/{namespace_name}/state/{state_id}"


@router.post("/namespace/{namespace_name}/states/enqueue", response_model=EnqueueResponse)
async def enqueue(namespace_name: str, body: EnqueueRequest, request: Request) -> Response:
    ctx = engine_context(request)
    claimed = await transitions.claim(
        ctx,
        namespace_name,
        body.nodes,
        body.batch_size,
        wait_ms=body.wait_ms,
        lease_ms=body.lease_ms,
        gone=request.is_disconnected,
        claimant=(body.runtime_name, body.runtime_instance),
    )
    return SafeJSONResponse(
        {
            "count": len(claimed),
            "namespace": namespace_name,
            "status": StateStatus.QUEUED,
            "states": [claimed_state_view(s, ctx.tracing.traceparent(s)) for s in claimed],
        }
    )


@router.post("/namespace/{namespace_name}/states/executed", response_model=ExecutedManyResponse)
async def executed_many(namespace_name: str, body: ExecutedManyRequest, request: Request) -> Response:
    """Additive: several results in one call and one transaction; each item answered on its own."""
    ctx = engine_context(request)
    reports = [transitions.ExecutedReport(r.state_id, r.outputs, r.lease_id, _usage(r.usage)) for r in body.results]
    answers, claimed = await transitions.executed_many(ctx, namespace_name, reports, _eager(body.claim))
    return SafeJSONResponse(
        {
            "results": [
                {"state_id": report.state_id, "status": StateStatus.EXECUTED}
                if error is None
                else {"state_id": report.state_id, "status_code": status_code(error), "detail": error.message}
                for report, error in zip(reports, answers, strict=True)
            ],
            "states": [claimed_state_view(s, ctx.tracing.traceparent(s)) for s in claimed],
        }
    )


@router.post(STATE + "/executed", response_model=ExecutedResponse)
async def executed(namespace_name: str, state_id: str, body: ExecutedRequest, request: Request) -> Response:
    ctx = engine_context(request)
    claimed = await transitions.executed(
        ctx, namespace_name, state_id, body.outputs, body.lease_id, _eager(body.claim), _usage(body.usage)
    )
    states = [claimed_state_view(s, ctx.tracing.traceparent(s)) for s in claimed]
    return SafeJSONResponse({"status": StateStatus.EXECUTED, "states": states})


def _eager(claim: EagerClaim | None) -> transitions.EagerClaim | None:
    """The result's additive `claim` (eager dispatch); without it nothing is claimed, as for the original client."""
    return None if claim is None else transitions.EagerClaim(claim.nodes, claim.max, claim.lease_ms)


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    """The result's additive `usage` as stored: only the fields sent; None when nothing was."""
    fields = {} if usage is None else usage.model_dump(exclude_none=True)
    return fields or None


@router.post(STATE + "/errored", response_model=ErroredResponse)
async def errored(namespace_name: str, state_id: str, body: ErroredRequest, request: Request) -> Response:
    retried = await transitions.errored(
        engine_context(request), namespace_name, state_id, body.error, body.lease_id, body.traceback, _usage(body.usage)
    )
    return SafeJSONResponse({"status": StateStatus.ERRORED, "retry_created": retried})


@router.post(STATE + "/prune", response_model=PruneResponse)
async def prune(namespace_name: str, state_id: str, body: PruneRequest, request: Request) -> Response:
    enqueue_after = await transitions.prune(engine_context(request), namespace_name, state_id, body.data, body.lease_id)
    return SafeJSONResponse({"enqueue_after": enqueue_after, "status": StateStatus.PRUNED})


@router.post(STATE + "/re-enqueue-after", response_model=ReEnqueueAfterResponse)
async def re_enqueue_after(
    namespace_name: str, state_id: str, body: ReEnqueueAfterRequest, request: Request
) -> Response:
    enqueue_after = await transitions.requeue_after(
        engine_context(request), namespace_name, state_id, body.enqueue_after, body.lease_id
    )
    return SafeJSONResponse({"enqueue_after": enqueue_after, "status": StateStatus.CREATED})


@router.post(STATE + "/wait-for-signal", response_model=WaitForSignalResponse)
async def wait_for_signal(namespace_name: str, state_id: str, body: WaitForSignalRequest, request: Request) -> Response:
    """Additive (docs/wire-extensions.md "Waiting for a signal"): the node raised WaitForSignal; the state
    waits without its runtime for the signal sent to its run, or runs again at once if it came already."""
    timeout_ms = None if body.timeout_seconds is None else max(1, round(body.timeout_seconds * 1000))
    status, timeout_at = await signal_waits.wait_for_signal(
        engine_context(request), namespace_name, state_id, body.name, timeout_ms, body.lease_id
    )
    return SafeJSONResponse({"status": status, "wait_timeout_at": timeout_at})


@router.post(STATE + "/manual-retry", response_model=ManualRetryResponse)
async def manual_retry(namespace_name: str, state_id: str, body: ManualRetryRequest, request: Request) -> Response:
    retry = await transitions.manual_retry(engine_context(request), namespace_name, state_id, body.fanout_id)
    return SafeJSONResponse({"id": retry.id, "status": StateStatus.CREATED})


@router.get(STATE + "/secrets", response_model=SecretsResponse)
async def secrets(namespace_name: str, state_id: str, request: Request) -> Response:
    return SafeJSONResponse(
        {"secrets": await transitions.secrets_for_state(engine_context(request), namespace_name, state_id)}
    )


@router.post(STATE + "/heartbeat", response_model=HeartbeatResponse)
async def heartbeat(namespace_name: str, state_id: str, body: HeartbeatRequest, request: Request) -> Response:
    expires = await transitions.heartbeat(
        engine_context(request), namespace_name, state_id, body.lease_id, body.lease_ms
    )
    return SafeJSONResponse({"lease_expires_at": expires})


@router.post(STATE + "/release", response_model=ReleaseResponse)
async def release(namespace_name: str, state_id: str, body: ReleaseRequest, request: Request) -> Response:
    await transitions.release(engine_context(request), namespace_name, state_id, body.lease_id)
    return SafeJSONResponse({"status": StateStatus.CREATED})
