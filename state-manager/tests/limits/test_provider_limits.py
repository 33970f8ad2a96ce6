"""Real SDK runtimes calling a simulated provider under a matching limit: nothing is refused by the
provider, and with the limit declared too high the provider's 429s are absorbed (RateLimitedSignal):
every state succeeds and none uses a retry. On PostgreSQL the runtimes use two replicas."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest
from exosphere_testing import ServerProcess
from exosphere_testing.provider import SimulatedProvider

from ..blackbox.helpers import register, run, states, upsert

STATES = 60
TOKENS = 100


@pytest.fixture
def servers(backend: str, server: ServerProcess, make_server: Callable[..., ServerProcess]) -> list[ServerProcess]:
    return [server] if backend == "sqlite" else [server, make_server(database=server.database_url)]


@pytest.fixture
def start_runtimes(namespace: str) -> Iterator[Callable[[list[ServerProcess], str, int], None]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(servers: list[ServerProcess], provider_url: str, count: int) -> None:
        for index in range(count):
            target = servers[index % len(servers)]
            env = {
                **os.environ,
                "EXOSPHERE_STATE_MANAGER_URI": target.url,
                "EXOSPHERE_API_KEY": target.api_key,
                "EXOSPHERE_LOG_LEVEL": "WARNING",
            }
            command = [sys.executable, "-m", "exosphere_testing.provider_runtime", namespace, provider_url]
            started.append(subprocess.Popen(command, env=env))

    yield start
    for process in started:
        process.kill()
        process.wait()


def run_through_provider(
    api: httpx.Client,
    namespace: str,
    declared_rpm: int,
    servers: list[ServerProcess],
    provider: SimulatedProvider,
    start_runtimes: Callable[[list[ServerProcess], str, int], None],
) -> list[str]:
    response = api.put(
        "/limits/provider", json={"requests_per_minute": declared_rpm, "tokens_per_minute": declared_rpm * TOKENS}
    )
    assert response.status_code == 200, response.text
    register(api, {"CallProvider": (("tokens", "who"), ("done",))})
    node = {
        "node_name": "CallProvider",
        "namespace": namespace,
        "identifier": "call",
        "inputs": {"tokens": str(TOKENS), "who": "${{ store.who }}"},
        "limits": [{"name": "provider", "tokens": str(TOKENS)}],
    }
    upsert(api, "calls", [node], store_config={"required_keys": ["who"]})
    start_runtimes(servers, provider.url, 2)
    body = {"runs": [{"store": {"who": str(i)}} for i in range(STATES)]}
    response = api.post("/graph/calls/trigger-many", json=body)
    assert response.status_code == 200, response.text
    run_ids = [r["run_id"] for r in response.json()["runs"]]
    for run_id in run_ids:
        while not run(api, run_id, wait_ms=20_000)["finished"]:
            pass
    return run_ids


def test_a_matching_limit_keeps_the_provider_from_refusing_anything(
    api: httpx.Client, namespace: str, servers: list[ServerProcess], start_runtimes: Callable[..., None]
) -> None:
    with SimulatedProvider(requests_per_minute=600, tokens_per_minute=600 * TOKENS) as provider:
        run_ids = run_through_provider(api, namespace, 600, servers, provider, start_runtimes)
        stats = provider.stats()
    assert stats.accepted == STATES and stats.rejected == 0, stats
    assert all(run(api, run_id)["status"] == "SUCCESS" for run_id in run_ids)


def test_a_limit_declared_too_high_absorbs_the_providers_429s_without_retries(
    api: httpx.Client, namespace: str, servers: list[ServerProcess], start_runtimes: Callable[..., None]
) -> None:
    # 20% above the provider, whose burst (0.5 s) is also below ours (1 s): it must refuse some calls.
    with SimulatedProvider(requests_per_minute=600, tokens_per_minute=600 * TOKENS, burst_seconds=0.5) as provider:
        run_ids = run_through_provider(api, namespace, 720, servers, provider, start_runtimes)
        stats = provider.stats()
    assert stats.rejected > 0 and stats.accepted == STATES, stats
    for run_id in run_ids:
        assert run(api, run_id)["status"] == "SUCCESS"
        [state] = states(api, run_id)
        assert state["retry_count"] == 0 and state["status"] == "SUCCESS", state
