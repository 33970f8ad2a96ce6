"""Request bodies over the limit are refused with 413 before they are read into memory."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from exosphere_testing import ServerProcess

SIXTY_MB = 60 * 1024 * 1024


def test_a_60_mb_trigger_is_refused_with_413_and_the_server_stays_up(api: httpx.Client, server: ServerProcess) -> None:
    body = b'{"store": {"text": "' + b"x" * SIXTY_MB + b'"}}'
    response = api.post("/graph/any/trigger", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:200]
    assert "EXOSPHERE_MAX_REQUEST_BYTES" in response.json()["detail"]
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_chunked_body_over_the_limit_is_refused_with_413(api: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"store": {"text": "'
        for _ in range(SIXTY_MB // (1024 * 1024)):
            yield b"x" * (1024 * 1024)
        yield b'"}}'

    response = api.post("/graph/any/trigger", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413, response.text[:200]


def test_a_body_under_the_limit_is_read(api: httpx.Client) -> None:
    body = b'{"store": {"text": "' + b"x" * (1024 * 1024) + b'"}}'
    response = api.post("/graph/missing/trigger", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 404  # read, parsed, and answered for what it is
