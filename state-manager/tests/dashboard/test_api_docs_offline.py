"""`/docs` and `/redoc` work offline: a browser that may reach nothing but the server renders both."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
from exosphere_testing import ServerProcess
from playwright.sync_api import BrowserContext, Page, Route


@pytest.fixture
def offline_page(context: BrowserContext, server: ServerProcess) -> Iterator[tuple[Page, list[str]]]:
    """A page whose requests anywhere but the server fail, as behind a strict firewall; the refused URLs."""
    refused: list[str] = []
    server_host = urlparse(server.url).netloc

    def only_the_server(route: Route) -> None:
        if urlparse(route.request.url).netloc == server_host:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_server)
    yield context.new_page(), refused


def test_swagger_ui_renders_every_route_from_the_package_files(offline_page: tuple[Page, list[str]]) -> None:
    page, refused = offline_page
    page.goto("/docs")
    page.locator(".opblock-summary-path", has_text="/v0/namespace/{namespace_name}/graph/{graph_name}").first.wait_for()
    assert page.locator(".info .title").inner_text().startswith("Exosphere State Manager")
    assert refused == []


def test_redoc_renders_the_contract_from_the_package_files(offline_page: tuple[Page, list[str]]) -> None:
    page, refused = offline_page
    page.goto("/redoc")
    page.locator("h1", has_text="Exosphere State Manager").wait_for()
    page.get_by_text("/v0/namespace/{namespace_name}/graph/{graph_name}").first.wait_for(state="attached")
    assert refused == []


def test_the_assets_are_served_with_their_types(offline_page: tuple[Page, list[str]]) -> None:
    page, _ = offline_page
    for name, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "javascript"),
    ):
        answer = page.request.get(f"/docs/assets/{name}")
        assert answer.status == 200 and kind in answer.headers["content-type"], (name, answer.headers)
