"""Dashboard pages under `/dashboard`: login, namespaces, graph templates, runs, a run, a state.

Every page but the login form needs a session (`session.require_page_session`); the JSON and SSE
endpoints the pages call live in `api.py` under `/dashboard/api`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlencode

from exospherehost.statuses import RETRYABLE_BY_HAND, RunStatus, StateStatus
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from exosphere_server.api.auth import reject_nul_characters
from exosphere_server.api.deps import engine_context
from exosphere_server.api.lockout import lockout_message, lockout_seconds_left, note_failure
from exosphere_server.dashboard import api, data, session
from exosphere_server.dashboard.layout import layout_template
from exosphere_server.dashboard.rendering import render_page
from exosphere_server.engine import audit, inspection, runs, serving
from exosphere_server.engine.errors import NotFound
from exosphere_server.engine.keys import Principal
from exosphere_server.engine.large_payloads import Side, payload_text

router = APIRouter(prefix="/dashboard", include_in_schema=False)
# After the session: a visitor who is not logged in learns nothing about the parameters. NUL in a path
# or query is a 422 here as on /v0 (PostgreSQL cannot compare such text).
pages = APIRouter(dependencies=[Depends(session.require_page_session), Depends(reject_nul_characters)])
STATIC_DIR = Path(__file__).parent / "static"
STATIC_FILES = {"dashboard.css": "text/css", "dashboard.js": "text/javascript"}
RUNS_PER_PAGE = 25
AUDIT_PER_PAGE = 100
# The routes open without a session; every other one has its roles in api/access.py.
PUBLIC_ROUTES = tuple(
    f"dashboard.routes.{name}" for name in ("login_form", "login", "logout", "static_file", "dashboard_root")
)


# -- login -----------------------------------------------------------------------------------------


def _locked_out_form(request: Request, target: str, seconds_left: float) -> Response:
    response = render_page(request, "login.html", status_code=429, next=target, error=lockout_message(seconds_left))
    response.headers["Retry-After"] = str(math.ceil(seconds_left))
    return response


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    target = session.safe_next(next)
    if left := lockout_seconds_left(request):
        return _locked_out_form(request, target, left)
    if await session.is_logged_in(request):
        return RedirectResponse(target, status_code=303)
    return render_page(request, "login.html", next=target, error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    # Parsed by hand: a url-encoded form with two fields does not need python-multipart.
    form = parse_qs((await request.body()).decode(errors="replace"))
    given = (form.get("api_key") or [""])[0]
    target = session.safe_next((form.get("next") or [""])[0])
    principal = await session.login_principal(request, given)
    matches = principal is not None
    if not matches:
        note_failure(request)  # counted first, so the failure that reaches the limit already says so
    if left := lockout_seconds_left(request):
        return _locked_out_form(request, target, left)
    if not matches:
        error = "That API key is not valid (runtime keys cannot open the dashboard)."
        return render_page(request, "login.html", status_code=401, next=target, error=error)
    assert principal is not None
    response = RedirectResponse(target, status_code=303)
    session.set_session_cookie(request, response, principal)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await session.end_session(request)
    response = RedirectResponse("/dashboard/login", status_code=303)
    session.clear_session_cookie(response)
    return response


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        return Response("Not found", status_code=404)
    return FileResponse(STATIC_DIR / name, media_type=STATIC_FILES[name], headers={"Cache-Control": "no-cache"})


@router.get("", include_in_schema=False)
async def dashboard_root() -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


# -- pages -----------------------------------------------------------------------------------------


def _not_found(request: Request, exc: NotFound) -> Response:
    return render_page(request, "error.html", status_code=404, message=exc.message)


@pages.get("/")
async def namespaces_page(request: Request) -> Response:
    found = await inspection.namespace_counts(engine_context(request))
    principal: Principal = request.state.principal
    if principal.namespace is not None:  # a key for one namespace sees that one only
        found = {name: counts for name, counts in found.items() if principal.may_act_in(name)}
    return render_page(
        request, "namespaces.html", namespaces=found, show_audit=session.session_may(request, AUDIT_PAGE)
    )


@pages.get("/ns/{namespace}")
async def namespace_page(namespace: str, request: Request) -> Response:
    templates = await data.templates(engine_context(request), namespace)
    return render_page(request, "namespace.html", namespace=namespace, templates=templates)


@pages.get("/ns/{namespace}/graphs/{graph_name}")
async def graph_page(namespace: str, graph_name: str, request: Request) -> Response:
    try:
        template = await data.template(engine_context(request), namespace, graph_name)
    except NotFound as exc:
        return _not_found(request, exc)
    return render_page(
        request, "graph.html", namespace=namespace, template=template, drawing=layout_template(template.nodes)
    )


def _utc_ms(value: str | None, problems: list[str], label: str) -> int | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        problems.append(f"'{label}' must be a date and time like 2024-05-01T10:00, got {value!r}")
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@pages.get("/ns/{namespace}/runs")
async def runs_page(
    namespace: str,
    request: Request,
    graph: str | None = None,
    status: str | None = None,
    created_from: str | None = Query(default=None, alias="from"),
    created_to: str | None = Query(default=None, alias="to"),
    page: int = Query(default=1, ge=1, le=1_000_000),
) -> Response:
    problems: list[str] = []
    if status and status not in data.RUN_STATUSES:
        problems.append(f"'status' must be one of {', '.join(data.RUN_STATUSES)}, got {status!r}")
        status = None
    start, end = _utc_ms(created_from, problems, "from"), _utc_ms(created_to, problems, "to")
    ctx = engine_context(request)
    found = await data.runs_page(
        ctx,
        namespace,
        graph_name=graph or None,
        status=status or None,
        created_from=start,
        created_to=end,
        page=page,
        size=RUNS_PER_PAGE,
    )
    filters = {"graph": graph or "", "status": status or "", "from": created_from or "", "to": created_to or ""}
    kept = {k: v for k, v in filters.items() if v}
    pages_total = max(1, -(-found.total // RUNS_PER_PAGE))
    return render_page(
        request,
        "runs.html",
        namespace=namespace,
        found=found,
        filters=filters,
        problems=problems,
        graph_names=[t.name for t in await data.templates(ctx, namespace)],
        statuses=data.RUN_STATUSES,
        page=page,
        pages_total=pages_total,
        page_link=lambda number: "?" + urlencode({**kept, "page": number}),
    )


@pages.get("/ns/{namespace}/runs/{run_id}")
async def run_page(namespace: str, run_id: str, request: Request) -> Response:
    ctx = engine_context(request)
    try:
        progress = await data.run_progress(ctx, namespace, run_id)
    except NotFound as exc:
        return _not_found(request, exc)
    nodes = await inspection.run_template_nodes(ctx, progress.run)
    live = progress.view()
    pending = live["status"] == RunStatus.PENDING
    if live["finished"]:
        live["finished_at"] = await runs.run_finished_at(ctx, run_id)
    return render_page(
        request,
        "run.html",
        namespace=namespace,
        run=progress.run,
        live=live,
        failures=await data.failures(ctx, namespace, run_id),
        cancelled=await runs.run_cancellation(ctx, run_id),
        may_cancel=session.session_may(request, "dashboard.api.cancel"),
        warnings=await serving.unserved_warnings(ctx, run_id) if pending else [],
        child_runs=await runs.child_runs(ctx, run_id),
        drawing=layout_template(nodes),
        statuses=data.ALL_STATUSES,
    )


@pages.get("/ns/{namespace}/states/{state_id}")
async def state_page(namespace: str, state_id: str, request: Request) -> Response:
    ctx = engine_context(request)
    try:
        detail = await data.state_detail(ctx, namespace, state_id)
    except NotFound as exc:
        return _not_found(request, exc)
    return render_page(
        request,
        "state.html",
        namespace=namespace,
        detail=detail,
        child_runs=await runs.child_runs(ctx, detail.state.run_id, state_id=state_id),
        state=detail.state,
        retryable=detail.state.status in RETRYABLE_BY_HAND,
        may_retry=session.session_may(request, "dashboard.api.retry"),
        waiting=detail.state.status == StateStatus.WAITING,
        may_signal=session.session_may(request, "dashboard.api.send_signal"),
        limit=data.SAME_POSITION_LIMIT,
    )


@pages.get("/ns/{namespace}/states/{state_id}/payload/{side}/{field}")
async def state_payload(namespace: str, state_id: str, side: Side, field: str, request: Request) -> Response:
    """One input or output value of a state as plain text: the "load" link of a large payload."""
    ctx = engine_context(request)
    try:
        state = await runs.get_state(ctx, namespace, state_id)
        return PlainTextResponse(await payload_text(ctx, state, side, field))
    except NotFound as exc:
        return _not_found(request, exc)


AUDIT_PAGE = "dashboard.routes.audit_page"


@pages.get("/audit")
async def audit_page(request: Request, before: int | None = Query(default=None, ge=1)) -> Response:
    """Who did what (admin only): the newest entries first, a page at a time."""
    entries = await audit.audit_entries(engine_context(request), AUDIT_PER_PAGE, before)
    older = entries[-1].id if len(entries) == AUDIT_PER_PAGE else None
    return render_page(request, "audit.html", entries=entries, older=older)


router.include_router(pages)
router.include_router(api.router)
