"""Wrong keys lock their client address out (DESIGN §6): the API key, the metrics key and the dashboard
login count together, and a locked-out address is refused even with the right key until the lock-out
ends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until

from .helpers import as_client, log_in, new_client_address, session_token, with_session

MAX_FAILURES = 20  # the default
LOCKOUT_S = 3


@pytest.fixture(scope="module")
def server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    # A long window, so that the count never restarts midway on a slow machine; a short lock-out to wait for.
    return make_server(
        env={"EXOSPHERE_AUTH_FAILURE_WINDOW_SECONDS": "600", "EXOSPHERE_AUTH_LOCKOUT_SECONDS": str(LOCKOUT_S)}
    )


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    """A kept-alive connection: 300 guesses take a moment, not a connection each."""
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def address() -> str:
    return new_client_address()


def graphs(http: httpx.Client, key: str | None, address: str) -> httpx.Response:
    headers = as_client(address) if key is None else as_client(address, **{"x-api-key": key})
    return http.get("/v0/namespace/lockout/graphs/", headers=headers)


def assert_locked_out(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= LOCKOUT_S
    assert "Too many wrong keys" in response.text


def test_300_wrong_keys_then_the_right_key_is_refused_until_the_lockout_ends(
    server: ServerProcess, http: httpx.Client, address: str
) -> None:
    statuses = [graphs(http, f"guess-{i}", address).status_code for i in range(300)]
    assert statuses[: MAX_FAILURES - 1] == [401] * (MAX_FAILURES - 1)
    assert set(statuses[MAX_FAILURES - 1 :]) == {429}

    assert_locked_out(graphs(http, server.api_key, address))
    assert graphs(http, server.api_key, new_client_address()).status_code == 200  # other addresses are served

    wait_until(lambda: graphs(http, server.api_key, address).status_code == 200, what="the lockout to end")


def test_requests_without_a_key_do_not_count_as_guesses(
    server: ServerProcess, http: httpx.Client, address: str
) -> None:
    assert {graphs(http, None, address).status_code for _ in range(MAX_FAILURES + 5)} == {401}
    assert graphs(http, server.api_key, address).status_code == 200


def test_wrong_metrics_keys_lock_the_api_too(server: ServerProcess, http: httpx.Client, address: str) -> None:
    for i in range(MAX_FAILURES - 1):
        assert http.get("/metrics", headers=as_client(address, authorization=f"Bearer guess-{i}")).status_code == 401
    assert_locked_out(http.get("/metrics", headers=as_client(address, authorization="Bearer last")))
    assert_locked_out(graphs(http, server.api_key, address))
    assert_locked_out(http.get("/metrics", headers=as_client(address, **{"x-api-key": server.api_key})))


def test_dashboard_login_locks_out_after_repeated_wrong_keys(
    server: ServerProcess, http: httpx.Client, address: str
) -> None:
    token = session_token(server, as_client(address))  # a session from before the guessing
    for i in range(MAX_FAILURES - 1):
        refused = log_in(server, f"guess-{i}", as_client(address))
        assert refused.status_code == 401 and "not valid" in refused.text
    assert_locked_out(log_in(server, "last-guess", as_client(address)))

    right = log_in(server, server.api_key, as_client(address))
    assert_locked_out(right)
    assert "exosphere_session" not in right.headers.get("set-cookie", "")
    assert_locked_out(http.get("/dashboard/login", headers=as_client(address)))
    assert_locked_out(http.get("/dashboard/", headers=as_client(address, **with_session(token))))
    assert_locked_out(graphs(http, server.api_key, address))  # one lock-out per address, API included
    assert log_in(server, server.api_key, as_client(new_client_address())).status_code == 303

    wait_until(lambda: log_in(server, server.api_key, as_client(address)).status_code == 303, what="the lockout to end")
    assert http.get("/dashboard/", headers=as_client(address, **with_session(token))).status_code == 200
