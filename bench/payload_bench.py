"""Large payloads benchmark: does a database full of 1 MB outputs slow claims and hops? (goal: no).

    .venv/bin/python bench/payload_bench.py [--backend sqlite|postgres|both] [--states 1000] [--samples 200]

For each backend, three fresh servers and databases, each first filled with `--states` finished
states (one run each) whose output is:

* `small`: 16 bytes;
* `1 MB apart`: 1 MB, kept apart from the rows (the default: over the 64 KiB threshold);
* `1 MB inline`: 1 MB, kept in the rows, as before large payloads existed (threshold raised to 2 MB).

Then, over real HTTP from this process, `--samples` times on each in turn (A B C A B C ...):

* claim: a trigger of a one-node graph, then the time of the claim (`POST /states/enqueue`) that hands
  its state out;
* hop: a two-node run: the time from sending the first node's result (which creates the second
  node's state) to the claim that hands out the second node's state answering;
* listing: `GET .../run/{run_id}/states` of one of the filled runs (a state with a 1 MB output, or
  a small one), as a dashboard or a script reads a run.

Also, for the `1 MB apart` database: a 10 MB hop, the same hop with a 10 MB output passed by a
placeholder, claim included (the payload's write, its read for the claim answer and the transfer).
Prints p50/p99 in milliseconds. PostgreSQL needs EXOSPHERE_BENCH_POSTGRES_URL (`make bench` sets it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url

NAMESPACE = "bench"
MB = 1000 * 1000
FILL_IN_FLIGHT = 8
CONFIGURATIONS = {  # name -> (output size of the filling states, EXOSPHERE_PAYLOAD_INLINE_BYTES)
    "small": (16, 64 * 1024),
    "1 MB apart": (MB, 64 * 1024),
    "1 MB inline": (MB, 2 * 1024 * 1024),
}


def _schema(*fields: str) -> dict[str, object]:
    return {"type": "object", "properties": {f: {"type": "string"} for f in fields}, "required": list(fields)}


async def _prepare(client: httpx.AsyncClient) -> None:
    nodes = [
        {"name": "Fill", "inputs_schema": _schema("x"), "outputs_schema": _schema("data"), "secrets": []},
        {"name": "Echo", "inputs_schema": _schema("x"), "outputs_schema": _schema("data"), "secrets": []},
        {"name": "First", "inputs_schema": _schema("x"), "outputs_schema": _schema("data"), "secrets": []},
        {"name": "Second", "inputs_schema": _schema("data"), "outputs_schema": _schema("data"), "secrets": []},
    ]
    (await client.put("/nodes/", json={"runtime_name": "bench", "nodes": nodes})).raise_for_status()

    def graph(*nodes: dict[str, object]) -> dict[str, object]:
        return {"secrets": {}, "nodes": [{"namespace": NAMESPACE, "next_nodes": [], **n} for n in nodes]}

    for name, body in {
        "fill": graph({"node_name": "Fill", "identifier": "fill", "inputs": {"x": "1"}}),
        "echo": graph({"node_name": "Echo", "identifier": "echo", "inputs": {"x": "1"}}),
        "hop": graph(
            {"node_name": "First", "identifier": "first", "inputs": {"x": "1"}, "next_nodes": ["second"]},
            {"node_name": "Second", "identifier": "second", "inputs": {"data": "${{ first.outputs.data }}"}},
        ),
    }.items():
        (await client.put(f"/graph/{name}", json=body)).raise_for_status()


async def _claim_one(client: httpx.AsyncClient, node: str) -> dict[str, object]:
    response = await client.post("/states/enqueue", json={"nodes": [node], "batch_size": 1, "wait_ms": 10_000})
    response.raise_for_status()
    [state] = response.json()["states"]
    return dict(state)


async def _done(client: httpx.AsyncClient, state: dict[str, object], data: str) -> None:
    body = {"outputs": [{"data": data}], "lease_id": state["lease_id"]}
    (await client.post(f"/state/{state['state_id']}/executed", json=body)).raise_for_status()


async def fill(client: httpx.AsyncClient, states: int, size: int) -> list[str]:
    """`states` finished runs whose one state output `size` bytes (each run's text its own); their ids."""
    sem = asyncio.Semaphore(FILL_IN_FLIGHT)

    async def one(number: int) -> str:
        async with sem:
            answer = await client.post("/graph/fill/trigger", json={})
            answer.raise_for_status()
            state = await _claim_one(client, "Fill")
            await _done(client, state, f"{number}-".ljust(size, "p"))
            return str(answer.json()["run_id"])

    return list(await asyncio.gather(*(one(n) for n in range(states))))


async def listing_time(client: httpx.AsyncClient, run_id: str) -> float:
    """A filled run's states listed (`GET .../run/{id}/states`): what a dashboard or a script reads."""
    started = time.perf_counter()
    (await client.get(f"/run/{run_id}/states")).raise_for_status()
    return (time.perf_counter() - started) * 1000


async def claim_latency(client: httpx.AsyncClient) -> float:
    (await client.post("/graph/echo/trigger", json={})).raise_for_status()
    started = time.perf_counter()
    state = await _claim_one(client, "Echo")
    elapsed = (time.perf_counter() - started) * 1000
    await _done(client, state, "1")
    return elapsed


async def hop_time(client: httpx.AsyncClient, data: str = "1") -> float:
    (await client.post("/graph/hop/trigger", json={})).raise_for_status()
    first = await _claim_one(client, "First")
    started = time.perf_counter()
    await _done(client, first, data)
    second = await _claim_one(client, "Second")
    elapsed = (time.perf_counter() - started) * 1000
    await _done(client, second, "1")
    return elapsed


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _figures(values: list[float]) -> str:
    return f"p50 {statistics.median(values):7.2f}  p99 {_p(values, 0.99):7.2f}"


async def measure(servers: dict[str, ServerProcess], states: int, samples: int) -> dict[str, dict[str, str]]:
    """Fill each configuration's server, then sample them in turn (A B C A B C ...): a drift of the
    shared machine's load touches every configuration alike."""
    clients = {
        name: httpx.AsyncClient(
            base_url=f"{server.url}/v0/namespace/{NAMESPACE}",
            headers={"x-api-key": server.api_key},
            timeout=120,
            limits=httpx.Limits(max_connections=FILL_IN_FLIGHT * 2),
        )
        for name, server in servers.items()
    }
    figures: dict[str, dict[str, str]] = {}
    filled: dict[str, list[str]] = {}
    try:
        for name, client in clients.items():
            await _prepare(client)
            started = time.perf_counter()
            filled[name] = await fill(client, states, CONFIGURATIONS[name][0])
            figures[name] = {"fill s": f"{time.perf_counter() - started:.1f}"}
        claims: dict[str, list[float]] = {name: [] for name in clients}
        hops: dict[str, list[float]] = {name: [] for name in clients}
        listings: dict[str, list[float]] = {name: [] for name in clients}
        for sample in range(samples):
            for name, client in clients.items():
                claims[name].append(await claim_latency(client))
                hops[name].append(await hop_time(client))
                listings[name].append(await listing_time(client, filled[name][sample % len(filled[name])]))
        for name in clients:
            figures[name].update(
                {
                    "claim ms": _figures(claims[name]),
                    "hop ms": _figures(hops[name]),
                    "listing ms": _figures(listings[name]),
                }
            )
        ten = "t" * (10 * MB)
        big = [await hop_time(clients["1 MB apart"], ten) for _ in range(max(3, samples // 20))]
        figures["1 MB apart"]["10 MB hop ms"] = _figures(big)
    finally:
        for client in clients.values():
            await client.aclose()
    return figures


def _database(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return sqlite_url(directory)
    admin = os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL")
    if not admin:
        raise SystemExit("EXOSPHERE_BENCH_POSTGRES_URL is not set (make bench starts a cluster and sets it)")
    return fresh_postgres_url(admin)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--states", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    print(f"{args.states} filling states, {args.samples} samples; load average {os.getloadavg()[0]:.2f}")
    for backend in backends:
        with contextlib.ExitStack() as stack:
            servers = {}
            for name, (_size, inline) in CONFIGURATIONS.items():
                directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                env = {"EXOSPHERE_PAYLOAD_INLINE_BYTES": str(inline)}
                servers[name] = stack.enter_context(ServerProcess(_database(backend, directory), env=env))
            figures = asyncio.run(measure(servers, args.states, args.samples))
        for name, found in figures.items():
            print(f"{backend:8} {name:12} " + "  ".join(f"{k}: {v}" for k, v in found.items()), flush=True)


if __name__ == "__main__":
    main()
