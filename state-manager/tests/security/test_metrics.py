"""`/metrics` names namespaces and nodes, so it takes a key: the API key or the metrics key, in
`x-api-key` or as `Authorization: Bearer` (what Prometheus sends). A loopback server without any key
keeps it open."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from exosphere_testing import ServerProcess

METRICS_KEY = "metrics-only-key"


@pytest.fixture(scope="module")
def metrics_key_server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server(env={"EXOSPHERE_METRICS_KEY": METRICS_KEY})


def metrics(server: ServerProcess, **headers: str) -> httpx.Response:
    return httpx.get(server.url + "/metrics", headers=headers)


def test_metrics_needs_the_api_key(server: ServerProcess) -> None:
    assert metrics(server).status_code == 401
    assert metrics(server, **{"x-api-key": "wrong"}).status_code == 401
    assert metrics(server, authorization="Bearer wrong").status_code == 401
    assert metrics(server, authorization=f"Basic {server.api_key}").status_code == 401
    assert metrics(server, **{"x-api-key": server.api_key}).status_code == 200
    answer = metrics(server, authorization=f"Bearer {server.api_key}")
    assert answer.status_code == 200 and "exosphere_claims_total" in answer.text


def test_a_metrics_key_opens_metrics_and_nothing_else(metrics_key_server: ServerProcess) -> None:
    server = metrics_key_server
    assert metrics(server, authorization=f"Bearer {METRICS_KEY}").status_code == 200
    assert metrics(server, **{"x-api-key": METRICS_KEY}).status_code == 200
    assert metrics(server, authorization=f"Bearer {server.api_key}").status_code == 200
    assert metrics(server).status_code == 401
    assert metrics(server, authorization="Bearer another-key").status_code == 401
    api = httpx.get(server.url + "/v0/namespaces", headers={"x-api-key": METRICS_KEY})
    assert api.status_code == 401


def test_metrics_is_open_on_a_loopback_server_without_a_key(make_server: Callable[..., ServerProcess]) -> None:
    open_server = make_server(api_key="")
    assert metrics(open_server).status_code == 200
