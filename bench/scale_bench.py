"""Does a hop cost more deep in a run, or with many runtimes waiting? (issue 15, goal rows "depth" and "runtimes")

    .venv/bin/python bench/scale_bench.py [--depth 1000] [--runtimes 1,10,50] [--fanout 10000] [--postgres ADMIN_URL]
    .venv/bin/python bench/scale_bench.py --before-src /tmp/old-checkout   # also an older checkout's server

`depth`: one run of a chain of `--depth` nodes; every node reads the root's output and its parent's
(`${{ n0.outputs.x }}`, `${{ n<k-1>.outputs.v }}`). One client claims (long-poll) and completes each
state in turn over HTTP. A hop is the time from sending `executed` for one state to holding the claim
of the next; the table shows the median and p90 of the first 20 hops (depth 1 to 20) and of the
last 20 (depth `--depth`-20 to `--depth`).

`runtimes`: the same chain, 60 nodes deep, with N claimers long-polling the chain's node at once
(as N runtimes serving it would): whichever gets a state completes it. A hop is the chain's wall
time / 60, median of 3 runs; with the server's CPU seconds per hop.

`fanout`: one run of plan -> split (fans out to `--fanout`, 10,000) -> work -> gather (unites plan),
driven by 4 claimers taking 100 states of `work` or `gather` at a time and reporting them in one
request. While it runs a probe asks `GET /health` every 20 ms; the table shows the run's wall time
(trigger to gather done), the server's CPU seconds meanwhile (steadier than wall time on a shared
machine), and the slowest and p99 `/health` answers.

SQLite always; PostgreSQL too with `--postgres` (or EXOSPHERE_BENCH_POSTGRES_URL, as `make bench`
sets it). `--before-src DIR` starts a second server from the `state-manager/src` and
`python-sdk/src` of another checkout (e.g. `git archive <commit> | tar -x -C DIR`), with this
environment's Python, and measures it the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from exosphere_testing import TEST_API_KEY, TEST_SECRETS_KEY, free_port, fresh_postgres_url, sqlite_url

NS = "bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WINDOW = 20
RUNTIMES_CHAIN = 60
RUNTIMES_RUNS = 3


def schema(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(names)}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Server:
    url: str
    pid: int


@contextmanager
def server(source: Path | None, database_url: str, log: Path) -> Iterator[Server]:
    env = {**os.environ, "STATE_MANAGER_SECRET": TEST_API_KEY, "SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY}
    if source is not None:
        env["PYTHONPATH"] = f"{source / 'state-manager' / 'src'}:{source / 'python-sdk' / 'src'}"
    port = free_port()
    command = [sys.executable, "-m", "exosphere_server", "server", "--port", str(port), "--database-url", database_url]
    with open(log, "ab") as output:
        process = subprocess.Popen([*command, "--log-level", "WARNING"], env=env, stdout=output, stderr=output)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start (log: {log})")
            time.sleep(0.1)
        yield Server(url, process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def chain_graph(depth: int) -> list[dict[str, Any]]:
    nodes = [{"node_name": "Root", "namespace": NS, "identifier": "n0", "inputs": {}, "next_nodes": ["n1"]}]
    for k in range(1, depth):
        inputs = {"root": "${{ n0.outputs.x }}", "prev": "${{ n" + str(k - 1) + ".outputs.v }}"}
        nexts = [f"n{k + 1}"] if k + 1 < depth else []
        nodes.append(
            {"node_name": "Hop", "namespace": NS, "identifier": f"n{k}", "inputs": inputs, "next_nodes": nexts}
        )
    return nodes


async def prepare(api: httpx.AsyncClient, graphs: dict[str, int]) -> None:
    nodes = [("Root", (), ("x", "v")), ("Hop", ("root", "prev"), ("v",)), ("Gather", ("root",), ("v",))]
    registration = [
        {"name": n, "inputs_schema": schema(*i), "outputs_schema": schema(*o), "secrets": []} for n, i, o in nodes
    ]
    (await api.put("/nodes/", json={"runtime_name": "bench", "nodes": registration})).raise_for_status()
    for name, depth in graphs.items():
        (await api.put(f"/graph/{name}", json={"nodes": chain_graph(depth), "secrets": {}})).raise_for_status()
    (await api.put("/graph/fan", json={"nodes": fan_graph(), "secrets": {}})).raise_for_status()


async def claim(api: httpx.AsyncClient, node: str, wait_ms: int = 5000) -> list[dict[str, Any]]:
    response = await api.post("/states/enqueue", json={"nodes": [node], "batch_size": 1, "wait_ms": wait_ms})
    response.raise_for_status()
    states: list[dict[str, Any]] = response.json()["states"]
    return states


async def complete(api: httpx.AsyncClient, state: dict[str, Any], outputs: dict[str, str]) -> None:
    body = {"outputs": [outputs], "lease_id": state["lease_id"]}
    (await api.post(f"/state/{state['state_id']}/executed", json=body)).raise_for_status()


async def measure_depth(api: httpx.AsyncClient, depth: int) -> dict[str, float]:
    (await api.post("/graph/deep/trigger", json={})).raise_for_status()
    [state] = await claim(api, "Root")
    hops: list[float] = []
    outputs = {"x": "root", "v": "0"}
    for k in range(1, depth):
        started = time.perf_counter()
        await complete(api, state, outputs)
        found: list[dict[str, Any]] = []
        while not found:
            found = await claim(api, "Hop")
        hops.append(time.perf_counter() - started)
        [state] = found
        outputs = {"v": str(k)}
    await complete(api, state, outputs)

    def summary(window: list[float]) -> tuple[float, float]:
        ordered = sorted(window)
        return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9)] * 1000

    first, last = summary(hops[:WINDOW]), summary(hops[-WINDOW:])
    return {"first_p50": first[0], "first_p90": first[1], "last_p50": last[0], "last_p90": last[1]}


async def serve(api: httpx.AsyncClient, node: str, done: asyncio.Event, left: list[int]) -> None:
    """A claimer: long-polls `node` and completes what it gets, until the chain is done."""
    while not done.is_set():
        for state in await claim(api, node, wait_ms=1000):
            await complete(api, state, {"x": "root", "v": "0"} if node == "Root" else {"v": "1"})
            left[0] -= 1
            if left[0] == 0:
                done.set()


async def measure_runtimes(api: httpx.AsyncClient, srv: Server, claimers: int) -> tuple[float, float]:
    """Wall ms per hop and server CPU ms per hop of a chain served by `claimers` long-polling claimers."""
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(RUNTIMES_RUNS):
        done = asyncio.Event()
        left = [RUNTIMES_CHAIN]
        tasks = [asyncio.create_task(serve(api, "Hop", done, left)) for _ in range(claimers)]
        tasks.append(asyncio.create_task(serve(api, "Root", done, left)))
        await asyncio.sleep(0.5)  # every claimer is waiting before the run starts
        cpu, started = cpu_seconds(srv.pid), time.perf_counter()
        (await api.post("/graph/shallow/trigger", json={})).raise_for_status()
        await done.wait()
        walls.append((time.perf_counter() - started) / RUNTIMES_CHAIN * 1000)
        cpus.append((cpu_seconds(srv.pid) - cpu) / RUNTIMES_CHAIN * 1000)
        # Not cancelled: a long-poll dropped mid-way could leave a claimed state nobody completes.
        await asyncio.gather(*tasks)
    return statistics.median(walls), statistics.median(cpus)


def fan_graph() -> list[dict[str, Any]]:
    def n(identifier: str, name: str, inputs: dict[str, str], nexts: list[str], **extra: Any) -> dict[str, Any]:
        return {
            "node_name": name,
            "namespace": NS,
            "identifier": identifier,
            "inputs": inputs,
            "next_nodes": nexts,
        } | extra

    return [
        n("plan", "Root", {}, ["split"]),
        n("split", "Hop", {"root": "${{ plan.outputs.x }}", "prev": "${{ plan.outputs.v }}"}, ["work"]),
        n("work", "Hop", {"root": "${{ plan.outputs.x }}", "prev": "${{ split.outputs.v }}"}, ["gather"]),
        n("gather", "Gather", {"root": "${{ plan.outputs.x }}"}, [], unites={"identifier": "plan"}),
    ]


async def probe_health(url: str, done: asyncio.Event, latencies: list[float]) -> None:
    """`GET /health` every 20 ms on a connection of its own, until `done`."""
    async with httpx.AsyncClient(timeout=60) as client:
        while not done.is_set():
            started = time.perf_counter()
            (await client.get(url + "/health")).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.02)


async def drain(api: httpx.AsyncClient, gathered: asyncio.Event) -> None:
    """A runtime serving the fan-out's nodes: claims up to 100 states of `work` or `gather` at a time and
    reports them in one request, until the gather is done. It asks for the gather too, as a runtime of the
    graph would: the gather is claimed as soon as the unite creates it (waking a waiting claimer), not
    once every claimer has given up on more work: the other claimers' last long-polls for work that will
    never come would add up to their whole `wait_ms` (a second) to the measured fan-out."""
    while not gathered.is_set():
        response = await api.post(
            "/states/enqueue", json={"nodes": ["Hop", "Gather"], "batch_size": 100, "wait_ms": 1000}
        )
        response.raise_for_status()
        batch = response.json()["states"]
        results = [
            {
                "state_id": s["state_id"],
                "outputs": [{"v": "done" if s["identifier"] == "gather" else "w"}],
                "lease_id": s["lease_id"],
            }
            for s in batch
        ]
        if results:
            (await api.post("/states/executed", json={"results": results})).raise_for_status()
        if any(s["identifier"] == "gather" for s in batch):
            gathered.set()


async def measure_fanout(api: httpx.AsyncClient, srv: Server, width: int) -> dict[str, float]:
    done = asyncio.Event()
    latencies: list[float] = []
    probe = asyncio.create_task(probe_health(srv.url, done, latencies))
    started, cpu_started = time.perf_counter(), cpu_seconds(srv.pid)
    (await api.post("/graph/fan/trigger", json={})).raise_for_status()
    [plan] = await claim(api, "Root")
    await complete(api, plan, {"x": "root", "v": "0"})
    [split] = await claim(api, "Hop")
    body = {"outputs": [{"v": str(i)} for i in range(width)], "lease_id": split["lease_id"]}
    fanning, cpu_fanning = time.perf_counter(), cpu_seconds(srv.pid)
    (await api.post(f"/state/{split['state_id']}/executed", json=body)).raise_for_status()
    fanned, cpu_fanned = time.perf_counter() - fanning, cpu_seconds(srv.pid) - cpu_fanning
    gathered = asyncio.Event()
    drains = [asyncio.create_task(drain(api, gathered)) for _ in range(4)]
    await gathered.wait()
    wall, cpu = time.perf_counter() - started, cpu_seconds(srv.pid) - cpu_started
    done.set()
    await asyncio.gather(probe, *drains)  # the other claimers' last long-polls end empty, unmeasured
    ordered = sorted(latencies)
    return {
        "wall_s": wall,
        "fan_s": fanned,
        "cpu_s": cpu,
        "fan_cpu_s": cpu_fanned,
        "health_max_ms": ordered[-1],
        "health_p99_ms": ordered[int(len(ordered) * 0.99)],
    }


@dataclass
class Figures:
    deep: dict[str, float]
    by_runtimes: dict[int, tuple[float, float]]
    fanout: dict[str, float]


async def measure(srv: Server, depth: int, runtimes: list[int], width: int) -> Figures:
    limits = httpx.Limits(max_connections=max(runtimes, default=1) + 10)
    headers = {"x-api-key": TEST_API_KEY}
    async with httpx.AsyncClient(
        base_url=f"{srv.url}/v0/namespace/{NS}", headers=headers, timeout=120, limits=limits
    ) as api:
        await prepare(api, {"shallow": RUNTIMES_CHAIN} | ({"deep": depth} if depth > WINDOW else {}))
        deep = await measure_depth(api, depth) if depth > WINDOW else {}
        by_runtimes = {n: await measure_runtimes(api, srv, n) for n in runtimes}
        fanout = await measure_fanout(api, srv, width) if width > 0 else {}
    return Figures(deep, by_runtimes, fanout)


def report(label: str, depth: int, width: int, figures: Figures) -> None:
    print(f"\n{label}")
    deep = figures.deep
    if deep:
        print(f"  hop at depth 1-{WINDOW}: p50 {deep['first_p50']:.2f} ms, p90 {deep['first_p90']:.2f} ms")
        print(f"  hop at depth {depth - WINDOW}-{depth}: p50 {deep['last_p50']:.2f} ms, p90 {deep['last_p90']:.2f} ms")
    for n, (wall, cpu) in figures.by_runtimes.items():
        print(f"  hop with {n:>3} claimers waiting: {wall:.2f} ms wall, {cpu:.2f} ms server CPU")
    fan = figures.fanout
    if fan:
        print(
            f"  fan-out of {width} + unite: {fan['wall_s']:.1f} s (the fanning `executed`: {fan['fan_s']:.1f} s); "
            f"server CPU {fan['cpu_s']:.2f} s (fanning: {fan['fan_cpu_s']:.2f} s); /health meanwhile: "
            f"max {fan['health_max_ms']:.0f} ms, p99 {fan['health_p99_ms']:.0f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--runtimes", default="1,10,50", help="comma-separated claimer counts ('' for none)")
    parser.add_argument("--fanout", type=int, default=10_000, help="width of the fan-out (0: skip it)")
    parser.add_argument("--postgres", default=os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL"), help="admin URL")
    parser.add_argument("--before-src", type=Path, help="another checkout: measure its server too")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    runtimes = [int(n) for n in args.runtimes.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        backends = [] if args.skip_sqlite else [("SQLite", lambda: sqlite_url(Path(tempfile.mkdtemp(dir=directory))))]
        if args.postgres:
            backends.append(("PostgreSQL", lambda: fresh_postgres_url(args.postgres)))
        sources: list[tuple[str, Path | None]] = [("this checkout", None)]
        if args.before_src:
            sources.append((f"server from {args.before_src}", args.before_src))
        for backend, database in backends:
            for name, source in sources:
                with server(source, database(), directory / "log") as srv:
                    figures = asyncio.run(measure(srv, args.depth, runtimes, args.fanout))
                report(f"{backend}, {name}", args.depth, args.fanout, figures)


if __name__ == "__main__":
    main()
