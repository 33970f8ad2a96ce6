"""No origin may call the server from a browser unless configured (`CORS_ORIGINS`); a configured one
never gets credentialed answers, and `/dashboard` answers carry no CORS headers at all, so a page on
another port of localhost cannot read dashboard JSON with the user's cookie."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from exosphere_testing import ServerProcess

from .helpers import session_token, with_session

ALLOWED = "https://console.example"
PROGRESS = "/dashboard/api/ns/any/runs/any/progress"


@pytest.fixture(scope="module")
def cors_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(env={"CORS_ORIGINS": ALLOWED})


def preflight(server: ServerProcess, path: str, origin: str) -> httpx.Response:
    headers = {"origin": origin, "access-control-request-method": "GET", "access-control-request-headers": "x-api-key"}
    return httpx.options(server.url + path, headers=headers)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def test_no_origin_is_allowed_by_default(server: ServerProcess) -> None:
    for origin in ("http://localhost:3000", "http://127.0.0.1:3001", ALLOWED):
        assert cors_headers(preflight(server, "/v0/namespaces", origin)) == {}
        read = httpx.get(server.url + "/v0/namespaces", headers={"origin": origin, "x-api-key": server.api_key})
        assert read.status_code == 200 and cors_headers(read) == {}


def test_a_configured_origin_may_call_the_api_without_credentials(cors_server: ServerProcess) -> None:
    allowed = preflight(cors_server, "/v0/namespaces", ALLOWED)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "access-control-allow-credentials" not in allowed.headers
    read = httpx.get(cors_server.url + "/v0/namespaces", headers={"origin": ALLOWED, "x-api-key": cors_server.api_key})
    assert read.headers["access-control-allow-origin"] == ALLOWED
    assert "access-control-allow-credentials" not in read.headers
    other = preflight(cors_server, "/v0/namespaces", "http://localhost:3000")
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers


def test_dashboard_answers_carry_no_cors_headers(cors_server: ServerProcess) -> None:
    token = session_token(cors_server)
    # The session works (a page, and a 404 for the unknown run rather than a 401), yet nothing is shared.
    for path, status in (("/dashboard/", 200), (PROGRESS, 404), ("/dashboard/login", 303)):
        assert cors_headers(preflight(cors_server, path, ALLOWED)) == {}
        read = httpx.get(cors_server.url + path, headers=with_session(token, origin=ALLOWED))
        assert read.status_code == status and cors_headers(read) == {}, (path, read.status_code)
