"""The HTTP layer: error mapping, and which failures are retried with backoff.

Every test runs on both transports (the runtime's aiohttp, StateManager's httpx): what a caller
sees must not depend on which one carries the request.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from exospherehost._aiohttp_client import AiohttpClient
from exospherehost._http import Answer, ApiClient, Backoff, error_from_response
from exospherehost._httpx_client import HttpxClient
from exospherehost.contract import EnqueueResponse
from exospherehost.errors import (
    ApiError,
    AuthenticationError,
    ConflictError,
    LeaseLostError,
    NotFoundError,
    ServerUnavailableError,
    UnexpectedAnswerError,
)
from fake_server import FakeServer, Reply, Request

pytestmark = pytest.mark.asyncio

FAST = {"initial": 0.001, "maximum": 0.01}


@pytest.fixture(params=[AiohttpClient, HttpxClient], ids=["aiohttp", "httpx"])
def client(request: pytest.FixtureRequest) -> type[ApiClient]:
    """Which transport the test runs on: ``client(url, key, timeout=...)`` opens one."""
    transport: type[ApiClient] = request.param
    return transport


def _scripted(*replies: Reply) -> FakeServer:
    queue = list(replies)

    async def handle(request: Request) -> Reply:
        return queue.pop(0) if queue else Reply(200, {"ok": True})

    return FakeServer(handle)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_requests_carry_the_api_key_and_json(client: type[ApiClient]) -> None:
    server = _scripted()
    await server.start()
    async with client(server.url + "/v0", "the-key") as api:
        assert await api.request("POST", "/x", json={"a": "b"}) == {"ok": True}
    await server.stop()
    assert server.requests[0].headers["x-api-key"] == "the-key"
    assert server.requests[0].path == "/v0/x"
    assert server.requests[0].body == {"a": "b"}


@pytest.mark.parametrize(
    ("status", "detail", "error_type"),
    [
        (401, "Invalid API key", AuthenticationError),
        (404, "State not found", NotFoundError),
        (409, "Lease lost: expired", LeaseLostError),
        (409, "Duplicate retry state detected", ConflictError),
        (503, "restarting", ServerUnavailableError),
        (400, "State is not queued", ApiError),
    ],
)
async def test_error_answers_become_typed_errors_with_the_servers_message(
    client: type[ApiClient], status: int, detail: str, error_type: type[ApiError]
) -> None:
    server = _scripted(Reply(status, {"detail": detail}))
    await server.start()
    async with client(server.url, "k") as api:
        with pytest.raises(error_type) as caught:
            await api.request("GET", "/x", action="Reading x")
    await server.stop()
    assert type(caught.value) is error_type
    assert caught.value.status_code == status
    assert caught.value.detail == detail
    assert str(caught.value) == f"Reading x failed: {status} {detail}"


async def test_network_errors_and_5xx_408_429_are_retried_until_accepted(client: type[ApiClient]) -> None:
    server = _scripted(Reply(503), Reply(drop=True), Reply(429), Reply(408), Reply(500), Reply(200, {"done": 1}))
    await server.start()
    async with client(server.url, "k") as api:
        assert await api.request_with_retry("POST", "/x", backoff=Backoff(**FAST)) == {"done": 1}
    await server.stop()
    assert len(server.requests) == 6


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
async def test_other_4xx_are_final_and_not_retried(client: type[ApiClient], status: int) -> None:
    server = _scripted(Reply(status, {"detail": "no"}))
    await server.start()
    async with client(server.url, "k") as api:
        with pytest.raises(ApiError) as caught:
            await api.request_with_retry("POST", "/x", backoff=Backoff(**FAST))
    await server.stop()
    assert caught.value.status_code == status
    assert len(server.requests) == 1


async def test_a_server_that_is_down_at_first_is_reached_once_it_comes_up(client: type[ApiClient]) -> None:
    port = _free_port()
    server = _scripted()
    server.port = port

    async def come_up_later() -> None:
        await asyncio.sleep(0.2)
        await server.start()

    starting = asyncio.create_task(come_up_later())
    async with client(f"http://127.0.0.1:{port}", "k") as api:
        assert await api.request_with_retry("GET", "/x", backoff=Backoff(initial=0.02, maximum=0.05)) == {"ok": True}
    await starting
    await server.stop()


async def test_connection_refused_is_unavailable_and_marked_as_never_sent(client: type[ApiClient]) -> None:
    async with client(f"http://127.0.0.1:{_free_port()}", "k") as api:
        with pytest.raises(ServerUnavailableError) as caught:
            await api.request_with_retry("POST", "/x", backoff=Backoff(**FAST), max_attempts=3)
    assert caught.value.status_code is None
    assert caught.value.request_sent is False
    assert caught.value.retryable


async def test_a_read_timeout_counts_as_sent(client: type[ApiClient]) -> None:
    async def hang(request: Request) -> Reply:
        await asyncio.sleep(1)
        return Reply()

    server = FakeServer(hang)
    await server.start()
    async with client(server.url, "k", timeout=0.05) as api:
        with pytest.raises(ServerUnavailableError) as caught:
            await api.request("GET", "/x")
    await server.stop()
    assert caught.value.request_sent is True


async def test_retrying_stops_when_give_up_says_so(client: type[ApiClient]) -> None:
    attempts = 0

    def give_up() -> bool:
        return attempts >= 3

    async def counting(request: Request) -> Reply:
        nonlocal attempts
        attempts += 1
        return Reply(503)

    server = FakeServer(counting)
    await server.start()
    async with client(server.url, "k") as api:
        with pytest.raises(ServerUnavailableError):
            await api.request_with_retry("GET", "/x", backoff=Backoff(**FAST), give_up=give_up)
    await server.stop()
    assert attempts == 3


async def test_one_connection_is_kept_alive_across_requests(client: type[ApiClient]) -> None:
    server = _scripted()
    await server.start()
    async with client(server.url, "k") as api:
        for _ in range(5):
            await api.request("GET", "/x")
    await server.stop()
    assert server.connections_accepted == 1


async def test_backoff_grows_with_equal_jitter_and_is_capped() -> None:
    backoff = Backoff(initial=0.1, maximum=5.0)
    delays = [backoff.next_delay() for _ in range(12)]
    for attempt, delay in enumerate(delays):
        ceiling = min(5.0, 0.1 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 5.0
    backoff.reset()
    assert backoff.next_delay() <= 0.1


async def test_an_error_body_that_is_not_json_still_gives_a_useful_message() -> None:
    # A proxy in front of the server may answer with HTML.
    error = error_from_response(Answer(502, b"<html>Bad Gateway</html>", "Bad Gateway"), "Claiming states")
    assert isinstance(error, ServerUnavailableError)
    assert str(error) == "Claiming states failed: 502 <html>Bad Gateway</html>"


async def test_requests_name_the_sdk_as_their_user_agent(client: type[ApiClient]) -> None:
    server = _scripted()
    await server.start()
    async with client(server.url, None) as api:
        await api.request("GET", "/x")
    await server.stop()
    assert server.requests[0].headers["user-agent"].startswith("exospherehost-python/")
    assert "x-api-key" not in server.requests[0].headers


async def test_a_body_written_as_it_is_produced_arrives_whole_with_its_query(client: type[ApiClient]) -> None:
    server = _scripted()
    await server.start()

    async def lines() -> AsyncIterator[bytes]:
        yield b'"one"\n'
        yield b'"two"\n'

    async with client(server.url, "k") as api:
        await api.request(
            "POST", "/s", params={"lease_id": "l/1", "offset": 2}, content=lines(), headers={"content-type": "x"}
        )
    await server.stop()
    assert server.requests[0].query == {"lease_id": "l/1", "offset": "2"}
    assert server.requests[0].body == '"one"\n"two"\n'
    assert server.requests[0].headers["content-type"] == "x"


async def test_a_path_quoted_by_the_caller_is_sent_as_quoted(client: type[ApiClient]) -> None:
    server = _scripted()
    await server.start()
    async with client(server.url + "/v0", "k") as api:
        await api.request("GET", "/state/a%2Fb%20c/x")
    await server.stop()
    assert server.requests[0].path == "/v0/state/a%2Fb%20c/x"


async def test_an_answer_cut_short_is_unavailable_and_counts_as_sent(client: type[ApiClient]) -> None:
    server = _scripted(Reply(200, {"partial": True}, truncated=True))
    await server.start()
    async with client(server.url, "k") as api:
        with pytest.raises(ServerUnavailableError) as caught:
            await api.request("POST", "/x")
    await server.stop()
    assert caught.value.request_sent is True
    assert caught.value.timed_out is False


async def test_a_success_answer_that_does_not_fit_the_contract_is_an_unexpected_answer(
    client: type[ApiClient],
) -> None:
    server = _scripted(Reply(200, raw=b"<html>hi</html>"), Reply(200, {"states": "many"}))
    await server.start()
    async with client(server.url, "k") as api:
        with pytest.raises(UnexpectedAnswerError, match="not JSON: '<html>hi</html>'"):
            await api.request("POST", "/x", answer=EnqueueResponse, action="Claiming states")
        with pytest.raises(
            UnexpectedAnswerError, match=r"does not fit EnqueueResponse: .*states: Input should be a valid list"
        ):
            await api.request("POST", "/x", answer=EnqueueResponse, action="Claiming states")
    await server.stop()


async def test_json_cannot_carry_nan_so_it_is_refused_before_sending(client: type[ApiClient]) -> None:
    server = _scripted()
    await server.start()
    async with client(server.url, "k") as api:
        with pytest.raises(ValueError, match="JSON compliant"):
            await api.request("POST", "/x", json={"score": float("nan")})
    await server.stop()
    assert server.requests == []


async def test_requests_go_through_the_proxy_the_environment_names(
    client: type[ApiClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _scripted()
    await server.start()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("http_proxy", server.url)
    async with client("http://state-manager.invalid/v0", "k") as api:
        assert await api.request("GET", "/x") == {"ok": True}
    await server.stop()
    assert server.requests[0].path == "/v0/x"
    assert server.requests[0].headers["host"] == "state-manager.invalid"


async def test_hosts_named_in_no_proxy_are_reached_directly(
    client: type[ApiClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = _scripted()
    await server.start()
    nowhere = f"http://127.0.0.1:{_free_port()}"  # a proxy that refuses every connection
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, nowhere)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1")
    async with client(server.url, "k") as api:
        assert await api.request("GET", "/x") == {"ok": True}
    await server.stop()
    assert server.requests[0].path == "/x"
