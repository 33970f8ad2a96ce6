"""`RateLimitedSignal` and `retry_after_seconds`: how a node tells the state manager its provider said 429."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from exospherehost import BaseNode, RateLimitedSignal, retry_after_seconds
from exospherehost.node import Outcome, run_node


async def test_rate_limited_signal_becomes_a_rate_limited_outcome() -> None:
    class Call(BaseNode):
        async def execute(self) -> None:
            raise RateLimitedSignal("openai", retry_after_seconds=2.5, key="customer-7")

    assert await run_node(Call, {}, {}) == Outcome(
        "rate-limited", {"limit": "openai", "retry_after_seconds": 2.5, "key": "customer-7"}
    )


@pytest.mark.parametrize(
    ("limit", "seconds"),
    [("", 1), ("@node", 1), ("openai", -1), ("openai", True), ("openai", "2")],
)
def test_rate_limited_signal_refuses_what_the_server_would(limit: str, seconds: object) -> None:
    with pytest.raises(ValueError):
        RateLimitedSignal(limit, retry_after_seconds=seconds)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "120"}, 0.12),
        ({"x-ratelimit-reset-requests": "1s"}, 1.0),
        ({"x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        ({"x-ratelimit-reset-requests": "120ms"}, 0.12),
        ({"x-ratelimit-reset-requests": "1h2m3.5s"}, 3723.5),
        ({"x-ratelimit-reset-requests": "20ms", "x-ratelimit-reset-tokens": "3s"}, 3.0),  # the longest wins
        ({"Retry-After": "soon"}, None),
        ({"x-ratelimit-reset-tokens": "3 parsecs"}, None),
        ({}, None),
    ],
)
def test_retry_after_seconds_reads_the_common_headers(headers: dict[str, str], expected: float | None) -> None:
    found = retry_after_seconds(httpx.Response(429, headers=headers))
    assert found == pytest.approx(expected) if expected is not None else found is None


def test_retry_after_seconds_reads_an_http_date() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = format_datetime(datetime(2026, 1, 2, 3, 4, 35, tzinfo=UTC), usegmt=True)
    assert retry_after_seconds({"Retry-After": later}, now=now.timestamp()) == 30.0
    earlier = format_datetime(datetime(2026, 1, 2, 3, 4, 0, tzinfo=UTC), usegmt=True)
    assert retry_after_seconds({"Retry-After": earlier}, now=now.timestamp()) == 0.0
