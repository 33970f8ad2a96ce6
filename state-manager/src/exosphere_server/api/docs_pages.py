"""`/docs` (Swagger UI) and `/redoc` (ReDoc) from files installed with the package, never from a CDN.

FastAPI's own pages load their scripts and styles from jsDelivr (and ReDoc its fonts from Google), so
they stay blank offline or behind a strict firewall. These serve the same pages with the copies in
`docs_assets/` (refreshed by `scripts/vendor-api-docs.sh`; versions and licences beside them).

Example::

    app = FastAPI(docs_url=None, redoc_url=None)
    install_docs_pages(app)
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = Path(__file__).parent / "docs_assets"
ASSETS_URL = "/docs/assets"


def install_docs_pages(app: FastAPI) -> None:
    """Serve `/docs`, `/redoc` and their assets under `/docs/assets/` (open, like `/openapi.json`)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs_assets")
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{title} - Swagger UI",
            swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{title} - ReDoc",
            redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS_URL}/favicon-32x32.png",
            with_google_fonts=False,
        )
