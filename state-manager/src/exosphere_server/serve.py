"""Run the state manager under uvicorn: check the database first, keep the objects loaded at start out of
the cycle collector's walks, drain long-polls on a stop signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
from types import FrameType

import structlog
import uvicorn

from exosphere_server.app import create_app, prepare_database
from exosphere_server.collector import tune_collector
from exosphere_server.config import Settings
from exosphere_server.engine.context import EngineContext

log = structlog.get_logger("exosphere.server")


def serve(settings: Settings, log_level: str = "INFO") -> None:
    """Serve until SIGTERM or SIGINT. Raises `SecretsKeyMismatch` before listening when the key is wrong."""
    asyncio.run(prepare_database(settings))  # a refusal is then one clear line, not a startup traceback
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level.lower(),
        access_log=False,
        loop="uvloop" if os.name == "posix" else "auto",
        http="httptools",
        timeout_graceful_shutdown=5,
        log_config=None,  # keep our JSON handler (logs.py) instead of uvicorn's plain-text one
    )
    _DrainingServer(config, app.state.ctx).run()


class _DrainingServer(uvicorn.Server):
    """On SIGTERM or SIGINT, answer the waiting long-polls and end the run streams at once, then stop as
    uvicorn does (it waits for open responses to end).

    Without this, each held claim waited out its bound (or the grace period) and ended in a 500.
    """

    def __init__(self, config: uvicorn.Config, ctx: EngineContext) -> None:
        super().__init__(config)
        self._ctx = ctx

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:  # started: storage, scheduler and routes are all loaded now
            log.info("startup_objects_frozen", objects=tune_collector(), young_objects=gc.get_threshold()[0])

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # A signal handler runs between two bytecodes of the loop's own thread: hand the wake-up to
        # the loop rather than touch its futures from here.
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_soon_threadsafe(self._ctx.stop_waiting)
