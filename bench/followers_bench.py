"""What following one busy run costs the server, with N = 1, 10, 100 followers at once.

    .venv/bin/python bench/followers_bench.py
    .venv/bin/python bench/followers_bench.py --before /tmp/feed-before/.venv/bin/python   # also an older server

A busy run: one root state fans out to `--fanout` (2,000) quick states, which a driver claims and
completes in batches as fast as the server allows. While it runs, N followers follow it, each in
one of these ways (they run in a child process, so that only the server's work is measured):

* `sse`: `GET /v0/.../run/{run_id}/events` (what `wait_for_run`, `watch_run` and `trigger --wait` use);
* `dashboard`: the dashboard's live view stream, `GET /dashboard/api/ns/{ns}/runs/{run_id}/events`;
* `poll`: `GET /v0/.../run/{run_id}/progress` every 0.5 s, as `exosphere trigger --wait` did;
* `long-poll`: `GET /v0/.../run/{run_id}?wait_ms=25000` in a loop, as `wait_for_run` did.

For each (way, N) it prints the server's CPU seconds from the first claim until every follower has
seen the run finish (utime + stime of the server process, from /proc), what the same run cost with
no follower, and what each follower received (events, or answers for the polls). `--before PYTHON`
runs the same against a server started with another environment's Python (an older checkout),
for the ways that server has. SQLite; PostgreSQL too with `--postgres URL` (an admin URL), where the
CPU of the database backends serving the server's pool is reported too (the counts are computed there).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
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
WAYS = ("sse", "dashboard", "poll", "long-poll")


def schema(*names: str) -> dict[str, Any]:
    return {"type": "object", "properties": {n: {"type": "string"} for n in names}, "required": list(names)}


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def database_backends(database_url: str) -> list[int]:
    """PIDs of the PostgreSQL backends connected to the database (the server's pool): their CPU is the
    database's share of the work (a GROUP BY per poll runs there, not in the server)."""
    import asyncpg

    async def pids() -> list[int]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        return [int(row["pid"]) for row in rows]

    return asyncio.run(pids())


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    database_url: str

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.process.pid)

    def database_cpu(self) -> dict[int, float]:
        if not self.database_url.startswith("postgresql"):
            return {}
        return {pid: cpu_seconds(pid) for pid in database_backends(self.database_url)}


@contextmanager
def server(python: str, database_url: str, log: Path) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        "STATE_MANAGER_SECRET": TEST_API_KEY,
        "SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY,
        "EXOSPHERE_MAX_LIVE_VIEWS_PER_CLIENT": "1000",  # every follower comes from this one address
    }
    command = [python, "-m", "exosphere_server", "server", "--port", str(port), "--database-url", database_url]
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
        yield Server(url, process, database_url)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def prepare(api: httpx.Client) -> None:
    nodes = [("Split", ("text",), ("part",)), ("Work", ("part",), ("out",))]
    registration = [
        {"name": n, "inputs_schema": schema(*i), "outputs_schema": schema(*o), "secrets": []} for n, i, o in nodes
    ]
    api.put("/nodes/", json={"runtime_name": "bench", "nodes": registration}).raise_for_status()
    graph = [
        {"node_name": "Split", "namespace": NS, "identifier": "split", "inputs": {"text": "x"}, "next_nodes": ["work"]},
        {"node_name": "Work", "namespace": NS, "identifier": "work", "inputs": {"part": "${{ split.outputs.part }}"}},
    ]
    api.put("/graph/fanout", json={"nodes": graph, "secrets": {}}).raise_for_status()


async def drive(base: str, fanout: int) -> None:
    """Claim and complete the run's states as fast as the server allows: the root, then the fan-out."""
    async with httpx.AsyncClient(base_url=base, headers={"x-api-key": TEST_API_KEY}, timeout=300) as api:

        async def claim(node: str, limit: int) -> list[dict[str, Any]]:
            body = {"nodes": [node], "batch_size": limit, "wait_ms": 2000}
            found: list[dict[str, Any]] = (await api.post("/states/enqueue", json=body)).json()["states"]
            return found

        [root] = await claim("Split", 1)
        outputs = [{"part": str(i)} for i in range(fanout)]
        (await api.post(f"/state/{root['state_id']}/executed", json={"outputs": outputs})).raise_for_status()
        done = 0
        while done < fanout:
            batch = await claim("Work", 100)
            results = [{"state_id": s["state_id"], "outputs": [{"out": "y"}], "lease_id": s["lease_id"]} for s in batch]
            (await api.post("/states/executed", json={"results": results})).raise_for_status()
            done += len(batch)


# -- the followers, in a child process -----------------------------------------------------------


async def follow(way: str, url: str, run_id: str, cookie: str) -> tuple[int, int]:
    """Follow the run until it is seen finished; returns how many events (or answers) arrived, and how
    many requests the server refused (a 503 when its database pool ran dry, say), each retried 1 s later."""
    headers = {"x-api-key": TEST_API_KEY}
    run = f"{url}/v0/namespace/{NS}/run/{run_id}"
    received = refused = 0
    async with httpx.AsyncClient(headers=headers, cookies={"exosphere_session": cookie}, timeout=120) as client:
        if way in ("sse", "dashboard"):
            stream_url = run + "/events" if way == "sse" else f"{url}/dashboard/api/ns/{NS}/runs/{run_id}/events"
            while True:  # the dashboard's stream may end (older servers: after 30 s); reconnect like EventSource
                async with client.stream("GET", stream_url) as response:
                    if response.status_code != 200:
                        refused += 1
                        await asyncio.sleep(1)
                        continue
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            received += 1
                            if json.loads(line[5:])["finished"]:
                                return received, refused
        while True:
            if way == "poll":
                answer = await client.get(run + "/progress")
            else:
                answer = await client.get(run, params={"wait_ms": 25_000})
            if answer.status_code != 200:
                refused += 1
                await asyncio.sleep(1)
                continue
            received += 1
            if answer.json()["finished"]:
                return received, refused
            if way == "poll":
                await asyncio.sleep(0.5)


async def followers_main(way: str, count: int, url: str, run_id: str, cookie: str) -> None:
    tasks = [asyncio.create_task(follow(way, url, run_id, cookie)) for _ in range(count)]
    await asyncio.sleep(0.5 + count * 0.01)  # let every follower connect before the run starts moving
    print("ready", flush=True)
    print(json.dumps(await asyncio.gather(*tasks)), flush=True)


# -- one measurement ------------------------------------------------------------------------------


def dashboard_cookie(url: str) -> str:
    with httpx.Client(base_url=url) as browser:
        browser.post("/dashboard/login", data={"api_key": TEST_API_KEY, "next": "/dashboard/"})
        return str(browser.cookies.get("exosphere_session") or "")


def measure(srv: Server, way: str | None, count: int, fanout: int) -> dict[str, Any]:
    base = f"{srv.url}/v0/namespace/{NS}"
    with httpx.Client(base_url=base, headers={"x-api-key": TEST_API_KEY}, timeout=60) as api:
        run_id = str(api.post("/graph/fanout/trigger", json={}).json()["run_id"])
    child = None
    if way is not None:
        command = [sys.executable, __file__, "--child", way, str(count), srv.url, run_id, dashboard_cookie(srv.url)]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the followers did not start")
    db_before = srv.database_cpu()
    cpu_before, started = srv.cpu_seconds(), time.monotonic()
    asyncio.run(drive(base, fanout))
    outcomes: list[tuple[int, int]] = []
    if child is not None:
        assert child.stdout is not None
        outcomes = json.loads(child.stdout.readline())
        child.wait()
    received = [r for r, _ in outcomes]
    cpu_after, db_after = srv.cpu_seconds(), srv.database_cpu()
    return {
        "way": way or "none",
        "followers": count,
        "server_cpu_s": cpu_after - cpu_before,
        "database_cpu_s": sum(cpu - db_before.get(pid, 0.0) for pid, cpu in db_after.items()),
        "wall_s": time.monotonic() - started,
        "received_min": min(received, default=0),
        "received_max": max(received, default=0),
        "refused": sum(refused for _, refused in outcomes),
    }


def run_all(label: str, python: str, database_url: str, ways: tuple[str, ...], fanout: int, log: Path) -> None:
    with server(python, database_url, log) as srv:
        with httpx.Client(base_url=f"{srv.url}/v0/namespace/{NS}", headers={"x-api-key": TEST_API_KEY}) as api:
            prepare(api)
        rows = [measure(srv, None, 0, fanout)]
        for way in ways:
            for count in (1, 10, 100):
                rows.append(measure(srv, way, count, fanout))
    print(f"\n{label}: fan-out of {fanout}, CPU from the first claim until every follower saw the end")
    heads = f"{'way':<10} {'N':>4} {'server CPU s':>13} {'over no follower':>17}"
    if database_url.startswith("postgresql"):
        heads += f" {'database CPU s':>15} {'over no follower':>17}"
    print(f"{heads} {'wall s':>7} {'per follower':>13} {'refused':>8}")
    base_cpu, base_db = rows[0]["server_cpu_s"], rows[0]["database_cpu_s"]
    for row in rows:
        received = (
            f"{row['received_min']}"
            if row["received_min"] == row["received_max"]
            else f"{row['received_min']}-{row['received_max']}"
        )
        line = f"{row['way']:<10} {row['followers']:>4} "
        line += f"{row['server_cpu_s']:>13.2f} {row['server_cpu_s'] - base_cpu:>+17.2f}"
        if database_url.startswith("postgresql"):
            line += f" {row['database_cpu_s']:>15.2f} {row['database_cpu_s'] - base_db:>+17.2f}"
        print(f"{line} {row['wall_s']:>7.1f} {received:>13} {row['refused']:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fanout", type=int, default=2000)
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated, of: " + ", ".join(WAYS))
    parser.add_argument("--before", help="Python of an older checkout's environment: measure its server too")
    parser.add_argument("--postgres", default=os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL"), help="admin URL")
    parser.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only")
    parser.add_argument("--skip-this", action="store_true", help="only the --before server")
    args = parser.parse_args()
    ways = tuple(w for w in args.ways.split(",") if w)
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        backends = [] if args.skip_sqlite else [("SQLite", lambda: sqlite_url(Path(tempfile.mkdtemp(dir=directory))))]
        if args.postgres:
            backends.append(("PostgreSQL", lambda: fresh_postgres_url(args.postgres)))
        for backend, database in backends:
            if not args.skip_this:
                run_all(f"{backend}, this checkout", sys.executable, database(), ways, args.fanout, directory / "log")
            if args.before:
                old_ways = tuple(w for w in ways if w != "sse")  # older servers have no /v0 run events
                run_all(
                    f"{backend}, --before server", args.before, database(), old_ways, args.fanout, directory / "log"
                )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        asyncio.run(followers_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]))
    else:
        main()
