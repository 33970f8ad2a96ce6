"""The ASGI application: storage, engine context and scheduler wired together, routes mounted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import structlog
from exospherehost.contract import HealthResponse
from fastapi import Depends, FastAPI, Request
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from starlette.responses import Response

from exosphere_server import __version__
from exosphere_server.api import (
    graph_routes,
    inspect_routes,
    key_routes,
    limit_routes,
    run_routes,
    signal_routes,
    state_routes,
    stream_routes,
)
from exosphere_server.api.access import check_every_route_has_a_rule
from exosphere_server.api.audit_trail import AuditTrailMiddleware
from exosphere_server.api.auth import reject_nul_characters, require_api_key, require_metrics_key
from exosphere_server.api.body_limit import BodyLimitMiddleware
from exosphere_server.api.cors import ApiOnlyCORSMiddleware
from exosphere_server.api.docs_pages import install_docs_pages
from exosphere_server.api.errors import REFUSALS, RETRY_AFTER_SECONDS, install_error_handlers
from exosphere_server.api.fast_lane import FastLane
from exosphere_server.api.host_check import HostCheckMiddleware
from exosphere_server.api.json_response import SafeJSONResponse
from exosphere_server.api.lockout import Lockouts
from exosphere_server.api.off_loop import install_body_schemas
from exosphere_server.api.request_id import RequestIdMiddleware
from exosphere_server.api.run_stream import LiveViews
from exosphere_server.api.schemas import UpsertGraphRequest
from exosphere_server.clock import now_ms
from exosphere_server.config import Settings, write_new_key_file
from exosphere_server.dashboard import api as dashboard_api
from exosphere_server.dashboard import routes as dashboard_routes
from exosphere_server.engine import health as engine_health
from exosphere_server.engine import metrics as engine_metrics
from exosphere_server.engine import serving
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.live_streams import StreamReaders
from exosphere_server.engine.run_feed import RunFeed
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.engine.secrets_key import verify_secrets_key
from exosphere_server.engine.wakeups import Wakeups
from exosphere_server.scheduler.loop import Scheduler
from exosphere_server.storage import open_storage
from exosphere_server.storage.base import Storage
from exosphere_server.storage.payloads import PayloadSettings
from exosphere_server.storage.records import RunRecord, StateRecord
from exosphere_server.tracing import Tracing, open_tracing

log = structlog.get_logger("exosphere.server")
HEALTH_DATABASE_TIMEOUT_S = 2.0
TRACE_FLUSH_TIMEOUT_S = 1.0
READY_DEPTH = Gauge("exosphere_ready_states", "States ready and waiting for a runtime", ["namespace", "node"])
UNSERVED = Gauge(
    "exosphere_unserved_node_states",
    "States ready for longer than EXOSPHERE_UNSERVED_NODE_SECONDS for a node no runtime asked for",
    ["namespace", "node"],
)
WAITING = Gauge(
    "exosphere_waiting_requests", "Long-polls (claims, run waits) and run event streams this replica holds open now"
)


class EngineListener:
    """Storage events to the parts that wait on them: claimers, the run change feed, the scheduler."""

    def __init__(
        self, wakeups: Wakeups, feed: RunFeed, streams: StreamReaders, scheduler: Scheduler, tracing: Tracing
    ) -> None:
        self.wakeups, self.feed, self.streams, self.scheduler, self.tracing = wakeups, feed, streams, scheduler, tracing

    def states_ready(self, ready: Mapping[tuple[str, str], int | None]) -> None:
        self.wakeups.feed(ready)

    def wake_everyone(self) -> None:
        self.wakeups.notify_all()

    def schedule_changed(self) -> None:
        self.scheduler.poke()

    def runs_changed(self, run_ids: set[str], pending_change: Mapping[str, int]) -> None:
        self.feed.changed(run_ids, pending_change)
        self.streams.runs_changed(run_ids)

    def every_run_changed(self) -> None:
        self.feed.every_run_changed()
        self.streams.runs_changed(None)

    def streams_changed(self, state_ids: set[str] | None) -> None:
        self.streams.streams_changed(state_ids)

    def lease_granted(self, deadline_ms: int) -> None:
        self.scheduler.note_deadline(deadline_ms)

    def runs_and_attempts(self, started: list[RunRecord], ended: list[StateRecord]) -> None:
        now = now_ms()
        for run in started:
            self.tracing.run_started(run, now)
        self.tracing.attempts_ended(ended, now)


async def flush_traces(tracing: Tracing) -> None:
    """Send the spans not exported yet, for at most TRACE_FLUSH_TIMEOUT_S: a collector that is down must
    not hold the server's stop (the exporter's own time-out is 10 s). Spans still queued then are lost."""
    try:
        await asyncio.wait_for(asyncio.to_thread(tracing.shutdown), TRACE_FLUSH_TIMEOUT_S)
    except TimeoutError:
        log.warning("traces_not_flushed", detail=f"the OTLP collector took none within {TRACE_FLUSH_TIMEOUT_S} s")


def fastapi_telemetry(tracing: Tracing) -> TelemetryConfig:
    off: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
    if not tracing.enabled:
        return off
    return {**off, "tracing": True, "operation_spans": True, "tracer_provider": tracing.tracer_provider}


async def check_secrets_key(settings: Settings, storage: Storage, box: SecretBox) -> None:
    """Refuse to serve with a key that cannot read the stored secrets (raises `SecretsKeyMismatch`)."""
    missing = settings.new_secrets_key_file
    outcome = await verify_secrets_key(
        storage,
        box,
        [SecretBox(key) for key in settings.previous_secrets_keys],
        missing_key_file=str(missing) if missing else None,
    )
    write_new_key_file(settings)
    if outcome == "rotated":
        log.warning("secrets_key_rotated", detail="every graph secret was re-encrypted with the current key")


def _payload_settings(settings: Settings) -> PayloadSettings:
    return PayloadSettings(
        inline_bytes=settings.payload_inline_bytes,
        max_bytes=settings.max_payload_bytes,
        store_url=settings.payload_store,
        s3_endpoint_url=settings.s3_endpoint_url,
    )


async def prepare_database(settings: Settings) -> None:
    """Migrate and check the secrets key before serving, so that a refusal is one clear line."""
    storage = open_storage(settings.database_url, settings.db_pool_size)
    await storage.start()
    try:
        await check_secrets_key(settings, storage, SecretBox(settings.secrets_key))
    finally:
        await storage.close()


def create_app(settings: Settings) -> FastAPI:
    storage = open_storage(settings.database_url, settings.db_pool_size, _payload_settings(settings))
    ctx = EngineContext(
        storage=storage,
        box=SecretBox(settings.secrets_key),
        default_lease_ms=settings.default_lease_ms,
        cron_catch_up=settings.cron_catch_up,
        max_graph_nodes=settings.max_graph_nodes,
        idempotency_key_ms=settings.idempotency_key_ms,
        unserved_after_ms=settings.unserved_after_ms,
    )
    ctx.tracing = open_tracing(settings.tracing)
    storage.track_attempts = ctx.tracing.enabled
    scheduler = Scheduler(ctx, settings.run_retention_days)
    storage.subscribe(EngineListener(ctx.wakeups, ctx.feed, ctx.streams, scheduler, ctx.tracing))

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await storage.start()
        await check_secrets_key(settings, storage, ctx.box)
        scheduler.start()
        log.info("server_started", database="sqlite" if settings.is_sqlite else "postgresql", port=settings.port)
        try:
            yield
        finally:
            await scheduler.stop()
            ctx.stop_waiting()
            await storage.close()
            await flush_traces(ctx.tracing)

    app = FastAPI(
        title="Exosphere State Manager",
        version=__version__,
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        docs_url=None,  # served from the package's own files instead (api/docs_pages.py)
        redoc_url=None,
        # FastAPI's own spans of each request (joining a caller's traceparent) when traces are on;
        # nothing at all otherwise.
        telemetry=fastapi_telemetry(ctx.tracing),
    )
    app.state.settings = settings
    app.state.ctx = ctx
    app.state.live_views = LiveViews(settings.max_live_views_per_client)
    app.state.lockouts = Lockouts(settings.auth_max_failures, settings.auth_failure_window_s, settings.auth_lockout_s)
    install_error_handlers(app)

    # In this order: a request without the right key learns nothing about its parameters.
    v0_dependencies = [Depends(require_api_key), Depends(reject_nul_characters)]
    api_modules = (
        graph_routes,
        state_routes,
        stream_routes,
        run_routes,
        signal_routes,
        inspect_routes,
        key_routes,
        limit_routes,
    )
    # Each module's router straight onto the app, not through one `/v0` router: every level of
    # included routers is matched again on each request (a third of the routing cost of a trigger).
    for module in api_modules:
        app.include_router(module.router, prefix="/v0", dependencies=v0_dependencies, responses=REFUSALS)
    app.include_router(dashboard_routes.router)  # its own auth: a session cookie (dashboard/session.py)
    check_every_route_has_a_rule(
        [m.router for m in api_modules] + [dashboard_routes.router, dashboard_routes.pages, dashboard_api.router],
        public=dashboard_routes.PUBLIC_ROUTES,
    )
    install_body_schemas(app, UpsertGraphRequest)
    install_docs_pages(app)

    @app.get(
        "/health",
        response_model=HealthResponse,
        responses={503: {"model": HealthResponse, "description": "The database does not answer"}},
    )
    async def health() -> Response:
        """`OK` only when the database answers a query: a load balancer then sends no traffic to a replica
        that could only answer 503."""
        try:
            await engine_health.check_database(ctx, HEALTH_DATABASE_TIMEOUT_S)
        except Exception as exc:  # any failure to answer is "not ready"; the reason is logged
            log.warning("health_database_unavailable", error_type=type(exc).__name__)
            return SafeJSONResponse(
                {"message": "database unavailable"}, status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS}
            )
        return SafeJSONResponse({"message": "OK"})

    @app.get("/metrics", include_in_schema=False, dependencies=[Depends(require_metrics_key)])
    async def metrics(request: Request) -> Response:
        depths = await engine_metrics.ready_queue_depths(request.app.state.ctx)
        ctx: EngineContext = request.app.state.ctx
        WAITING.set(ctx.wakeups.waiting() + ctx.feed.follower_count() + ctx.streams.count())
        READY_DEPTH.clear()
        for (namespace, node), depth in depths.items():
            READY_DEPTH.labels(namespace, node).set(depth)
        UNSERVED.clear()
        for (namespace, node), count in (await serving.unserved_nodes(ctx)).items():
            UNSERVED.labels(namespace, node).set(count)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # Added innermost first: the fast lane of the hot routes (fast_lane.py, inside everything else of
    # ours, as the routes are); the audit trail (it sees the answers of the routes); the body limit (inside
    # the request id, so its refusal carries the id); the Host check wraps everything, so a rebound
    # name is answered by nothing else; CORS only for the API (cors.py), then the request id on every
    # answer that gets that far.
    app.add_middleware(FastLane, fastapi_app=app)
    app.add_middleware(AuditTrailMiddleware, ctx=ctx)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestIdMiddleware)
    if settings.cors_origins:
        app.add_middleware(ApiOnlyCORSMiddleware, allow_origins=list(settings.cors_origins))
    app.add_middleware(HostCheckMiddleware, allowed_hosts=settings.allowed_hosts)
    return app
