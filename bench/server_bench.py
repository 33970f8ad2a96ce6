"""State manager benchmark: claim-to-completion round trips per second, and wake-up latency of long-poll claims.

    .venv/bin/python bench/server_bench.py [--backend sqlite|postgres|both] [--states 2000]

PostgreSQL needs EXOSPHERE_BENCH_POSTGRES_URL (an admin URL; `make bench` starts a local cluster).
Each figure comes from a fresh server process and a fresh database, driven over real HTTP from this process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url
from run import _cpu_seconds

NAMESPACE = "bench"
SCHEMA = {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}


async def _prepare(client: httpx.AsyncClient) -> None:
    nodes = [{"name": "Echo", "inputs_schema": SCHEMA, "outputs_schema": SCHEMA, "secrets": []}]
    (await client.put("/nodes/", json={"runtime_name": "bench", "nodes": nodes})).raise_for_status()
    graph = {
        "secrets": {},
        "nodes": [
            {"node_name": "Echo", "namespace": NAMESPACE, "identifier": "echo", "inputs": {"x": "1"}, "next_nodes": []}
        ],
    }
    (await client.put("/graph/echo", json=graph)).raise_for_status()


async def round_trips(
    client: httpx.AsyncClient, pid: int, states: int, claimers: int, batch: int
) -> tuple[float, float]:
    """Pre-create `states` ready states, then `claimers` loops claim and complete them; returns states/s
    and the server's CPU (user + system) per state: its own cost of a claim and a result."""
    sem = asyncio.Semaphore(16)

    async def trigger() -> None:
        async with sem:
            (await client.post("/graph/echo/trigger", json={})).raise_for_status()

    await asyncio.gather(*(trigger() for _ in range(states)))
    done = 0

    async def claimer() -> None:
        nonlocal done
        while done < states:
            response = await client.post("/states/enqueue", json={"nodes": ["Echo"], "batch_size": batch})
            claimed = response.json()["states"]
            if not claimed:
                return
            for state in claimed:
                body = {"outputs": [{"x": "1"}], "lease_id": state["lease_id"]}
                (await client.post(f"/state/{state['state_id']}/executed", json=body)).raise_for_status()
                done += 1

    started, cpu = time.perf_counter(), _cpu_seconds(pid)
    await asyncio.gather(*(claimer() for _ in range(claimers)))
    elapsed, spent = time.perf_counter() - started, _cpu_seconds(pid) - cpu
    assert done == states, f"completed {done} of {states}"
    return states / elapsed, spent * 1000 / states


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


async def wake_latency(client: httpx.AsyncClient, samples: int) -> tuple[list[float], list[float]]:
    """Per sample: ms from sending a trigger to the parked claimer holding the new state (seen by the
    client), and ms the state waited on the server between its commit and its claim."""
    latencies: list[float] = []
    waits: list[float] = []
    for _ in range(samples):
        claim = asyncio.create_task(
            client.post("/states/enqueue", json={"nodes": ["Echo"], "batch_size": 1, "wait_ms": 10_000})
        )
        await asyncio.sleep(0.02)  # the claimer is parked on the server before the state exists
        sent = time.perf_counter()
        (await client.post("/graph/echo/trigger", json={})).raise_for_status()
        response = await claim
        latencies.append((time.perf_counter() - sent) * 1000)
        [state] = response.json()["states"]
        await client.post(f"/state/{state['state_id']}/executed", json={"outputs": [], "lease_id": state["lease_id"]})
        detail = (await client.get(f"/state/{state['state_id']}")).json()
        waits.append(_ms(detail["started_at"]) - _ms(detail["created_at"]))
    return latencies, waits


async def bench_backend(name: str, database_url: str, log_dir: Path, states: int) -> dict[str, float]:
    with ServerProcess(database_url, log_path=log_dir / f"{name}.log") as server:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(
            base_url=f"{server.url}/v0/namespace/{NAMESPACE}",
            limits=limits,
            timeout=60,
            headers={"x-api-key": server.api_key},
        ) as client:
            await _prepare(client)
            assert server.process is not None
            pid = server.process.pid
            one, one_cpu = await round_trips(client, pid, states, claimers=8, batch=1)
            batched, batched_cpu = await round_trips(client, pid, states, claimers=4, batch=16)
            latencies, waits = await wake_latency(client, 200)
            latencies.sort()
    return {
        "round_trips_per_s_batch1": one,
        "round_trips_per_s_batch16": batched,
        "server_cpu_ms_per_state_batch1": one_cpu,
        "server_cpu_ms_per_state_batch16": batched_cpu,
        "wake_ms_median": statistics.median(latencies),
        "wake_ms_p99": latencies[int(len(latencies) * 0.99) - 1],
        "server_wait_ms_median": statistics.median(waits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--states", type=int, default=2000)
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            if backend == "sqlite":
                url = sqlite_url(Path(tmp))
            else:
                admin = os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL")
                if not admin:
                    print("postgres: skipped (set EXOSPHERE_BENCH_POSTGRES_URL or use `make bench`)")
                    continue
                url = fresh_postgres_url(admin)
            figures = asyncio.run(bench_backend(backend, url, Path(tmp), args.states))
            print(
                f"{backend:<9} claim→complete round trips: "
                f"{figures['round_trips_per_s_batch1']:7.0f}/s (batch 1, 8 claimers)"
                f"  {figures['round_trips_per_s_batch16']:7.0f}/s (batch 16, 4 claimers);"
                f" server CPU per state {figures['server_cpu_ms_per_state_batch1']:.2f} ms (batch 1),"
                f" {figures['server_cpu_ms_per_state_batch16']:.2f} ms (batch 16)"
                f" | trigger sent → parked claimer has it: median {figures['wake_ms_median']:.2f} ms,"
                f" p99 {figures['wake_ms_p99']:.2f} ms; committed → claimed on the server:"
                f" median {figures['server_wait_ms_median']:.0f} ms"
            )


if __name__ == "__main__":
    main()
