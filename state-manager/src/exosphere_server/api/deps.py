"""Dependencies shared by the routes."""

from __future__ import annotations

from fastapi import Request

from exosphere_server.engine.context import EngineContext


def engine_context(request: Request) -> EngineContext:
    ctx: EngineContext = request.app.state.ctx
    return ctx
