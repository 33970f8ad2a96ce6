"""Flow control against a simulated provider (issue 12): does a declared limit keep a provider happy,
and does a limit declared too high recover from its 429s?

    .venv/bin/python bench/flow_bench.py [--states 2000] [--rpm 3000] [--runtimes 4] [--postgres ADMIN_URL]

A `SimulatedProvider` (exosphere_testing.provider) allows `--rpm` requests and `--rpm * 100` tokens a
minute (token buckets holding 2 s of its rate) and answers 429 with `Retry-After` beyond. `--states`
runs of a one-node graph each make one call of 100 tokens, through `--runtimes` SDK runtimes
(`exosphere_testing.provider_runtime`, which raises `RateLimitedSignal` on a 429); on PostgreSQL the
runtimes are spread over two state manager replicas. Two scenarios per backend:

* matched: the Exosphere limit equals the provider's. Figures: the rate the provider accepted calls
  at (first to last call) against the limit, and how many calls it refused (goal: within 5%, 0).
* 20% high: the limit is declared 20% above the provider's. Figures: runs that succeeded, states
  that used a retry (goal: all, 0), and the total time (trigger to last call) against the ideal,
  `states / rate` (goal: within 10%).

Then the cost of limits per claim: the median time of a claim request (batch of 1, answered at once)
for a node without limits and for one with a limit that always has room.

SQLite always; PostgreSQL too with `--postgres` (or EXOSPHERE_BENCH_POSTGRES_URL, as `make bench` sets it).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import sqlalchemy as sa
from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url
from exosphere_testing.provider import SimulatedProvider
from sqlalchemy.ext.asyncio import create_async_engine

TOKENS = 100
T = TypeVar("T")
NS = "flow"


@dataclass
class Outcome:
    backend: str
    scenario: str
    declared_rpm: int
    accepted_per_minute: float
    refused: int
    succeeded: int
    retried: int
    total_s: float
    ideal_s: float


def api(server: ServerProcess, namespace: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=60
    )


def schema(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(names)}


def prepare(client: httpx.Client, namespace: str, declared_rpm: int | None, graph: str = "calls") -> None:
    if declared_rpm is not None:
        body = {"requests_per_minute": declared_rpm, "tokens_per_minute": declared_rpm * TOKENS}
        client.put("/limits/provider", json=body).raise_for_status()
    nodes = [
        {
            "name": "CallProvider",
            "inputs_schema": schema("tokens", "who"),
            "outputs_schema": schema("done"),
            "secrets": [],
        }
    ]
    client.put("/nodes/", json={"runtime_name": "provider-caller", "nodes": nodes}).raise_for_status()
    node: dict[str, Any] = {
        "node_name": "CallProvider",
        "namespace": namespace,
        "identifier": "call",
        "inputs": {"tokens": str(TOKENS), "who": "${{ store.who }}"},
    }
    if declared_rpm is not None:
        node["limits"] = [{"name": "provider", "tokens": str(TOKENS)}]
    body = {"secrets": {}, "nodes": [node], "store_config": {"required_keys": ["who"]}}
    client.put(f"/graph/{graph}", json=body).raise_for_status()


def trigger(client: httpx.Client, count: int, graph: str = "calls") -> None:
    for start in range(0, count, 1000):
        runs = [{"store": {"who": str(i)}} for i in range(start, min(count, start + 1000))]
        client.post(f"/graph/{graph}/trigger-many", json={"runs": runs}).raise_for_status()


def on_database(database_url: str, work: Callable[[sa.Connection], T]) -> T:
    if database_url.startswith("sqlite"):
        engine = sa.create_engine(database_url)
        with engine.connect() as conn:
            found = work(conn)
        engine.dispose()
        return found

    async def on_postgres() -> T:
        engine = create_async_engine(database_url.replace("postgresql://", "postgresql+asyncpg://", 1))
        async with engine.connect() as conn:
            found = await conn.run_sync(work)
        await engine.dispose()
        return found

    return asyncio.run(on_postgres())


def count_states(database_url: str, namespace: str) -> tuple[int, int]:
    """(states that succeeded, states that used a retry) of the namespace, read from the database."""
    query = sa.text(
        "SELECT SUM(CASE WHEN status = 'SUCCESS' THEN 1 ELSE 0 END), SUM(CASE WHEN retry_count > 0 THEN 1 ELSE 0 END) "
        "FROM states WHERE namespace = :ns"
    )

    def read(conn: sa.Connection) -> tuple[int, int]:
        row = conn.execute(query, {"ns": namespace}).one()
        return int(row[0] or 0), int(row[1] or 0)

    return on_database(database_url, read)


def attempt_errors(database_url: str, namespace: str) -> list[tuple[str, int]]:
    """The errors of failed attempts in the namespace, most frequent first (a retry needs one)."""
    query = sa.text(
        "SELECT error, COUNT(*) FROM states WHERE namespace = :ns AND error IS NOT NULL "
        "GROUP BY error ORDER BY COUNT(*) DESC LIMIT 3"
    )

    def read(conn: sa.Connection) -> list[tuple[str, int]]:
        return [(str(row[0])[:160], int(row[1])) for row in conn.execute(query, {"ns": namespace})]

    return on_database(database_url, read)


def scenario(
    backend: str, servers: list[ServerProcess], name: str, declared_rpm: int, args: argparse.Namespace
) -> Outcome:
    namespace = f"{NS}-{name}"
    runtimes: list[subprocess.Popen[bytes]] = []
    with SimulatedProvider(args.rpm, args.rpm * TOKENS) as provider, api(servers[0], namespace) as client:
        prepare(client, namespace, declared_rpm)
        for index in range(args.runtimes):
            target = servers[index % len(servers)]
            env = {
                **os.environ,
                "EXOSPHERE_STATE_MANAGER_URI": target.url,
                "EXOSPHERE_API_KEY": target.api_key,
                "EXOSPHERE_LOG_LEVEL": "ERROR",
            }
            command = [sys.executable, "-m", "exosphere_testing.provider_runtime", namespace, provider.url]
            runtimes.append(subprocess.Popen(command, env=env))
        try:
            time.sleep(2)  # let the runtimes register and start asking
            started = time.time()
            trigger(client, args.states)
            while provider.stats().accepted < args.states:
                time.sleep(0.2)
            stats = provider.stats()
            succeeded, retried = count_states(servers[0].database_url, namespace)
            while succeeded < args.states:
                time.sleep(0.2)
                succeeded, retried = count_states(servers[0].database_url, namespace)
            for error, count in attempt_errors(servers[0].database_url, namespace):
                print(f"  {count} failed attempts: {error}", flush=True)
        finally:
            for process in runtimes:
                process.kill()
                process.wait()
    assert stats.last_at is not None
    return Outcome(
        backend,
        name,
        declared_rpm,
        stats.accepted_per_minute or 0.0,
        stats.rejected,
        succeeded,
        retried,
        stats.last_at - started,
        args.states * 60 / args.rpm,
    )


def claim_cost(server: ServerProcess, claims: int) -> tuple[float, float]:
    """Median milliseconds of a claim request (batch 1, answered at once): without limits, with one."""
    results = []
    for label, rpm in (("plain", None), ("limited", 10_000_000)):
        namespace = f"{NS}-cost-{label}"
        with api(server, namespace) as client:
            prepare(client, namespace, rpm)
            trigger(client, claims)
            times = []
            for _ in range(claims):
                began = time.perf_counter()
                answer = client.post("/states/enqueue", json={"nodes": ["CallProvider"], "batch_size": 1})
                times.append((time.perf_counter() - began) * 1000)
                assert answer.status_code == 200 and len(answer.json()["states"]) == 1, answer.text
            results.append(statistics.median(times))
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=2000)
    parser.add_argument("--rpm", type=int, default=3000, help="the provider's requests per minute")
    parser.add_argument("--runtimes", type=int, default=4)
    parser.add_argument("--claims", type=int, default=300, help="claim requests timed per kind")
    parser.add_argument("--postgres", default=os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL"))
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()
    outcomes: list[Outcome] = []
    costs: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        for backend in args.backends.split(","):
            if backend == "postgres" and not args.postgres:
                print("postgres: skipped (no --postgres or EXOSPHERE_BENCH_POSTGRES_URL)")
                continue
            url = sqlite_url(Path(directory)) if backend == "sqlite" else fresh_postgres_url(args.postgres)
            first = ServerProcess(url, log_path=Path(directory) / f"{backend}-1.log").start()
            servers = [first]
            if backend == "postgres":
                servers.append(ServerProcess(url, log_path=Path(directory) / f"{backend}-2.log").start())
            try:
                for name, factor in (("matched", 1.0), ("20% high", 1.2)):
                    outcome = scenario(backend, servers, name.replace("% ", "pct-"), round(args.rpm * factor), args)
                    outcome.scenario = name
                    outcomes.append(outcome)
                    print(render(outcome, args), flush=True)
                costs[backend] = claim_cost(first, args.claims)
            finally:
                for server in servers:
                    server.stop()
    print()
    print(f"{args.states} states, provider {args.rpm} rpm / {args.rpm * TOKENS} tpm, {args.runtimes} runtimes")
    print(
        f"{'backend':9} {'scenario':9} {'declared':>8} {'accepted/min':>12} {'vs limit':>8} {'429s':>5} "
        f"{'ok':>5} {'retried':>7} {'total s':>8} {'vs ideal':>8}"
    )
    for outcome in outcomes:
        print(render(outcome, args))
    for backend, (plain, limited) in costs.items():
        print(
            f"claim request, {backend}: {plain:.2f} ms without limits, {limited:.2f} ms with a limit "
            f"(+{limited - plain:.2f} ms)"
        )


def render(o: Outcome, args: argparse.Namespace) -> str:
    versus_limit = (o.accepted_per_minute / args.rpm - 1) * 100
    versus_ideal = (o.total_s / o.ideal_s - 1) * 100
    return (
        f"{o.backend:9} {o.scenario:9} {o.declared_rpm:8} {o.accepted_per_minute:12.0f} {versus_limit:+7.1f}% "
        f"{o.refused:5} {o.succeeded:5} {o.retried:7} {o.total_s:8.1f} {versus_ideal:+7.1f}%"
    )


if __name__ == "__main__":
    main()
