"""Jinja2 environment of the dashboard and the headers every dashboard answer carries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from exospherehost.statuses import PHASE, Phase
from fastapi import Request
from fastapi.responses import HTMLResponse

from exosphere_server import __version__
from exosphere_server.dashboard import layout
from exosphere_server.dashboard.data import PAGE_STATUSES, PHASES
from exosphere_server.storage.payloads import is_ref, ref_bytes

# No inline script or style anywhere, and nothing from another origin (the machines may have no internet).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(ms: int | None) -> str:
    """Epoch ms as a UTC timestamp a person reads (the dashboard shows UTC throughout)."""
    if ms is None:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def duration(start: int | None, end: int | None) -> str:
    if start is None or end is None:
        return "—"
    seconds = max(0, end - start) / 1000
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def count(n: int) -> str:
    """A count with thousands separators: ``12,345``."""
    return f"{n:,}"


def usd(dollars: float) -> str:
    """Dollars with the digits that matter (``$12.34``, ``$0.0031``); dashboard.js's `usd` writes the same."""
    return f"${dollars:,.2f}" if dollars >= 1 else f"${dollars:.4g}"


def usage_text(usage: dict[str, Any] | None) -> str:
    """An attempt's usage in one line, as `exosphere run show` writes it: ``1,200 in + 80 out tokens, $0.0031``."""
    if not usage:
        return "—"
    parts = [f"{usage.get('input_tokens') or 0:,} in + {usage.get('output_tokens') or 0:,} out tokens"]
    if usage.get("requests"):
        parts.append(f"{usage['requests']:,} request{'' if usage['requests'] == 1 else 's'}")
    if usage.get("cost_usd"):
        parts.append(usd(usage["cost_usd"]))
    return ", ".join(parts)


def inline_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Input or output values as a page shows them whole: every one but the large payloads kept apart."""
    return {name: value for name, value in values.items() if not is_ref(value)}


def large_values(values: Mapping[str, Any]) -> dict[str, int]:
    """The large payloads among input or output values, by size in bytes: a page links to them instead."""
    return {name: ref_bytes(value) for name, value in values.items() if is_ref(value)}


def bar_segments(phases: dict[Phase, int], width: float) -> list[tuple[Phase, float, float]]:
    """(phase, x, width) of a node's stacked status bar; dashboard.js draws the same on updates."""
    total = sum(phases.values())
    segments, x = [], 0.0
    for phase in PHASES:
        share = width * phases.get(phase, 0) / total if total else 0.0
        segments.append((phase, x, share))
        x += share
    return segments


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("exosphere_server.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    extensions=["jinja2.ext.do"],
)
_env.filters["when"] = when
_env.filters["count"] = count
_env.filters["usd"] = usd
_env.filters["inline_values"] = inline_values
_env.filters["large_values"] = large_values
_env.globals.update(
    duration=duration,
    bar_segments=bar_segments,
    usage_text=usage_text,
    version=__version__,
    PHASES=PHASES,
    PHASE=PHASE,
    PAGE_STATUSES=PAGE_STATUSES,
    NODE_WIDTH=layout.NODE_WIDTH,
    NODE_HEIGHT=layout.NODE_HEIGHT,
)


def render_page(request: Request, page_template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    # Who is logged in (a page behind the session; the login form has nobody), shown in the header.
    who = getattr(request.state, "principal", None)
    html = _env.get_template(page_template).render(request=request, who=who, **context)
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)
