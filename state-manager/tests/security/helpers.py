"""Shared by the security tests: client addresses of their own, logins, waiting for an event."""

from __future__ import annotations

import uuid

import httpx
from exosphere_testing import ServerProcess

SESSION_COOKIE = "exosphere_session"


def new_client_address() -> str:
    """A client address no other test uses. The server trusts X-Forwarded-For from 127.0.0.1 (uvicorn's
    FORWARDED_ALLOW_IPS default, as behind a local reverse proxy), so each test locks out only itself."""
    raw = uuid.uuid4().bytes
    return f"10.{raw[0]}.{raw[1]}.{raw[2]}"


def as_client(address: str, **headers: str) -> dict[str, str]:
    return {"x-forwarded-for": address, **headers}


def log_in(server: ServerProcess, key: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        server.url + "/dashboard/login",
        content=f"api_key={key}&next=/dashboard/",
        headers={"content-type": "application/x-www-form-urlencoded", **(headers or {})},
    )


def session_token(server: ServerProcess, headers: dict[str, str] | None = None) -> str:
    response = log_in(server, server.api_key, headers)
    assert response.status_code == 303, response.text
    return response.cookies[SESSION_COOKIE]


def with_session(token: str, **headers: str) -> dict[str, str]:
    return {"cookie": f"{SESSION_COOKIE}={token}", **headers}
