"""What one HTTP request costs the SDK's client, against the alternatives, on a real local state manager.

    .venv/bin/python bench/client_bench.py [--requests 3000] [--rounds 3]

Starts `exosphere server` (uvicorn, SQLite) and, for each client below, a process of its own that
sends requests to it: `GET /health`, and an empty claim (`POST .../states/enqueue` for a node nobody
registered, `wait_ms=0`), one request in flight at a time and then 16. It prints requests/s, the wall
µs per request and the client process's own CPU µs per request (the part the client decides; the
server's share is the same for every client). The clients take turns, round after round, so that a
drift of a shared machine touches all alike; the figures are the medians of the rounds.

* `sdk`: the client the SDK's runtime sends with (`exospherehost._aiohttp_client.AiohttpClient`), as
  shipped: error mapping, JSON encoding and decoding.
* `sdk-httpx`: StateManager's client (`exospherehost._httpx_client.HttpxClient`), the same on httpx.
* `httpx`: a bare `httpx.AsyncClient` with default limits, `sniffio` as installed.
* `httpx-no-sniffio`: the same, with `import sniffio` failing as it does when the package is missing
  (the same search of every import path, then `ModuleNotFoundError`): httpcore repeats that import
  for every lock it creates, several times a request.
* `httpx-pool`: httpx with the pool sized for the concurrency and no environment lookups
  (`trust_env=False`).
* `aiohttp`: `aiohttp.ClientSession` with a `TCPConnector` of the same size.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.abc
import importlib.machinery
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

CLIENTS = ["sdk", "sdk-httpx", "httpx", "httpx-no-sniffio", "httpx-pool", "aiohttp"]
CONCURRENCY = [1, 16]
NAMESPACE = "client-bench"
CLAIM_BODY = {"nodes": ["NobodyServesThis"], "batch_size": 1, "wait_ms": 0}


class _MissingModule(importlib.abc.MetaPathFinder):
    """Make `import NAME` fail exactly as for a package that is not installed: every finder searches."""

    def __init__(self, name: str) -> None:
        self.name = name

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        if fullname != self.name:
            return None
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                finder.find_spec(f"{self.name}_is_not_installed", path, target)
        raise ModuleNotFoundError(f"No module named {self.name!r}", name=self.name)


Send = Callable[[], Awaitable[None]]


async def _with_client(
    client: str, url: str, key: str, connections: int, body: Callable[[Send, Send], Awaitable[dict[str, float]]]
) -> dict[str, float]:
    """Open `client`, hand `body` a function per endpoint that sends one request, close it."""
    base = f"{url}/v0/namespace/{NAMESPACE}"
    headers = {"x-api-key": key}
    if client in ("sdk", "sdk-httpx"):
        from exospherehost._aiohttp_client import AiohttpClient
        from exospherehost._httpx_client import HttpxClient

        transport = AiohttpClient if client == "sdk" else HttpxClient
        async with transport(f"{url}/v0", key, max_connections=connections) as api:

            async def health() -> None:
                await api.request("GET", f"{url}/health")

            async def claim() -> None:
                await api.request("POST", f"/namespace/{NAMESPACE}/states/enqueue", json=CLAIM_BODY)

            return await body(health, claim)
    if client == "aiohttp":
        import aiohttp

        connector = aiohttp.TCPConnector(limit=connections)
        async with aiohttp.ClientSession(headers=headers, connector=connector) as session:

            async def health() -> None:
                async with session.get(f"{url}/health") as response:
                    response.raise_for_status()
                    await response.json()

            async def claim() -> None:
                async with session.post(f"{base}/states/enqueue", json=CLAIM_BODY) as response:
                    response.raise_for_status()
                    await response.json()

            return await body(health, claim)
    import httpx

    options: dict[str, Any] = {}
    if client == "httpx-pool":
        options = {
            "limits": httpx.Limits(
                max_connections=connections, max_keepalive_connections=connections, keepalive_expiry=60
            ),
            "trust_env": False,
        }
    async with httpx.AsyncClient(headers=headers, **options) as http:

        async def health() -> None:
            (await http.get(f"{url}/health")).raise_for_status()

        async def claim() -> None:
            response = await http.post(f"{base}/states/enqueue", json=CLAIM_BODY)
            response.raise_for_status()
            response.json()

        return await body(health, claim)


async def _measure(send: Send, requests: int, in_flight: int) -> tuple[float, float]:
    """Send `requests` requests, `in_flight` at a time; returns (wall seconds, CPU seconds of this process)."""
    remaining = requests

    async def loop() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await send()

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop() for _ in range(in_flight)))
    return time.perf_counter() - wall, time.process_time() - cpu


def run_client(client: str, url: str, key: str, requests: int) -> dict[str, float]:
    """The child process's work: every endpoint and concurrency with one client."""

    async def body(health: Send, claim: Send) -> dict[str, float]:
        figures: dict[str, float] = {}
        for endpoint, send in (("health", health), ("claim", claim)):
            for in_flight in CONCURRENCY:
                await _measure(send, max(50, requests // 20), in_flight)  # warm-up: connections, caches
                wall, cpu = await _measure(send, requests, in_flight)
                figures[f"{endpoint}/{in_flight}/rps"] = requests / wall
                figures[f"{endpoint}/{in_flight}/wall_us"] = wall / requests * 1e6
                figures[f"{endpoint}/{in_flight}/cpu_us"] = cpu / requests * 1e6
        return figures

    return asyncio.run(_with_client(client, url, key, max(CONCURRENCY), body))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per endpoint and concurrency")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--child", nargs=3, metavar=("CLIENT", "URL", "KEY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        client, url, key = args.child
        if client == "httpx-no-sniffio":
            sys.modules.pop("sniffio", None)
            sys.meta_path.insert(0, _MissingModule("sniffio"))
        print(json.dumps(run_client(client, url, key, args.requests)))
        return

    from exosphere_testing import ServerProcess, sqlite_url

    try:
        import sniffio  # noqa: F401

        installed = "installed"
    except ImportError:
        installed = "NOT installed"
    clients = args.clients.split(",")
    print(
        f"sniffio {installed}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.requests} requests per figure, {args.rounds} round(s)",
        flush=True,
    )
    runs: dict[str, list[dict[str, float]]] = {client: [] for client in clients}
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(sqlite_url(Path(tmp))) as server:
        for _ in range(args.rounds):
            for client in clients:
                command = [
                    sys.executable,
                    __file__,
                    "--requests",
                    str(args.requests),
                    "--child",
                    client,
                    server.url,
                    server.api_key,
                ]
                output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
                runs[client].append(json.loads(output))
    print(f"load {os.getloadavg()[0]:.2f} at the end\n")
    print(f"{'client':<18} {'request':<10} {'in flight':>9} {'requests/s':>11} {'wall µs':>9} {'client CPU µs':>14}")
    for endpoint in ("health", "claim"):
        for in_flight in CONCURRENCY:
            for client in clients:

                def median(figure: str) -> float:
                    return statistics.median(run[f"{endpoint}/{in_flight}/{figure}"] for run in runs[client])  # noqa: B023

                print(
                    f"{client:<18} {endpoint:<10} {in_flight:>9} {median('rps'):>11.0f} {median('wall_us'):>9.0f} "
                    f"{median('cpu_us'):>14.0f}"
                )
            print()


if __name__ == "__main__":
    main()
