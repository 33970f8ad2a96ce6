"""Whether this replica can serve: the database answers a query."""

from __future__ import annotations

import asyncio

from exosphere_server.engine.context import EngineContext


async def check_database(ctx: EngineContext, timeout_s: float) -> None:
    """Return when the database answers a query within `timeout_s`; raise otherwise (`TimeoutError` or
    the driver's error)."""
    await asyncio.wait_for(ctx.storage.ping(), timeout_s)
