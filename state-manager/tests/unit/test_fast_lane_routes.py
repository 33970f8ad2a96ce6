"""The fast lane refuses to start when a route it serves takes a parameter it would not give."""

from __future__ import annotations

import pytest
from exosphere_server.api.fast_lane import FastRoute
from exosphere_server.api.schemas import ExecutedRequest, TriggerRequest
from fastapi import APIRouter, Header, Request
from starlette.responses import Response


def test_a_route_with_a_parameter_the_fast_lane_does_not_give_is_refused_at_start_up() -> None:
    router = APIRouter()

    @router.post("/namespace/{namespace_name}/state/{state_id}/executed")
    async def executed(
        namespace_name: str, state_id: str, body: ExecutedRequest, request: Request, trace: str | None = Header(None)
    ) -> Response:
        return Response()

    with pytest.raises(RuntimeError, match=r"takes .*trace.* update FAST_ROUTES"):
        FastRoute(router, executed, ExecutedRequest)


def test_a_route_whose_body_is_another_model_is_refused_at_start_up() -> None:
    router = APIRouter()

    @router.post("/namespace/{namespace_name}/state/{state_id}/executed")
    async def executed(namespace_name: str, state_id: str, body: ExecutedRequest, request: Request) -> Response:
        return Response()

    with pytest.raises(RuntimeError, match="update FAST_ROUTES"):
        FastRoute(router, executed, TriggerRequest)
    assert FastRoute(router, executed, ExecutedRequest).path.fullmatch("/v0/namespace/a/state/b/executed")
