"""Logging out of the dashboard ends the session for good: a copy of the old cookie is refused, on
every replica (the revocation is stored, not only the cookie deleted)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from exosphere_testing import ServerProcess

from .helpers import session_token, with_session

PROGRESS = "/dashboard/api/ns/any/runs/any/progress"


def logged_in(server: ServerProcess, token: str) -> bool:
    page = httpx.get(server.url + "/dashboard/", headers=with_session(token))
    api = httpx.get(server.url + PROGRESS, headers=with_session(token))
    # Both agree, or the test says which one is wrong.
    assert (page.status_code == 200) == (api.status_code != 401), (page.status_code, api.status_code)
    return page.status_code == 200


def log_out(server: ServerProcess, token: str) -> None:
    response = httpx.post(server.url + "/dashboard/logout", headers=with_session(token))
    assert response.status_code == 303 and response.headers["location"] == "/dashboard/login"


def test_a_logged_out_session_cookie_is_refused_when_replayed(server: ServerProcess) -> None:
    token, other = session_token(server), session_token(server)
    assert logged_in(server, token)
    log_out(server, token)
    assert not logged_in(server, token)
    refused = httpx.get(server.url + "/dashboard/", headers=with_session(token))
    assert refused.status_code == 303 and refused.headers["location"].startswith("/dashboard/login")
    log_out(server, token)  # twice is harmless
    assert logged_in(server, other)  # only that session ended
    assert logged_in(server, session_token(server))


def test_logout_on_one_replica_ends_the_session_on_the_others(
    backend: str, make_server: Callable[..., ServerProcess]
) -> None:
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; one SQLite file has one server")
    first = make_server()
    second = make_server(first.database_url)
    token = session_token(first)
    assert logged_in(second, token)  # (and caches nothing that outlives the logout)
    log_out(first, token)
    assert not logged_in(second, token)
    assert not logged_in(first, token)
