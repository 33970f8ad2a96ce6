"""Live streams: from a node's `stream` call to a client's `stream_state` receiving it, under load.

    .venv/bin/python bench/stream_bench.py [--nodes 20] [--rate 50] [--seconds 20] [--postgres ADMIN_URL]

Starts `exosphere server` (SQLite, or a fresh PostgreSQL database with `--postgres`), one SDK runtime
process serving `Streamer` with a worker per node, and one reader process. `--nodes` runs of a
one-node graph each run one `Streamer`, which calls `await self.stream(...)` `--rate` times a second
for `--seconds`, each chunk carrying the wall-clock time of its call. The reader follows every
state's stream with `StateManager.stream_state` and notes, per chunk, the time from the call to its
arrival (same machine, same clock). Chunks sent before the reader started, or in its first second,
are left out: those arrive by catching up from offset 0 (or on connections warming up), not live.

Printed, rates and CPU over the window the nodes streamed in: latency p50 / p90 / p99 / max, and the
part of it until the server had committed the chunk (`stored_ms`, from the chunk's `written_at`); the
CPU of the server, the runtime and the reader (utime + stime, as a share of one core); the database's
write rate: the transactions that stored chunks (`exosphere_stream_writes_total`), on SQLite the bytes
the server process wrote to disk (/proc/PID/io), on PostgreSQL the commits (read-only transactions
count too), rows inserted and WAL bytes per second (pg_stat_database, pg_current_wal_lsn); and the
upload requests per node per second, from the server's request log. The figures go to bench/results/ as JSON too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from exosphere_testing import TEST_API_KEY, TEST_SECRETS_KEY, free_port, fresh_postgres_url, sqlite_url

NS = "stream-bench"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
WARM_UP_S = 1.0

RUNTIME = """
import asyncio, sys, time
from exospherehost import BaseNode, Runtime
from pydantic import BaseModel

RATE, SECONDS = float(sys.argv[2]), float(sys.argv[3])

class Streamer(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        sent: str

    async def execute(self):
        count = int(RATE * SECONDS)
        start = time.monotonic()
        for i in range(count):
            pause = start + i / RATE - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            await self.stream(f"{time.time():.6f} ")
        return self.Outputs(sent=str(count))

Runtime(namespace=sys.argv[1], name="stream-bench", nodes=[Streamer], workers=int(sys.argv[4]),
        shutdown_grace_seconds=1).start()
"""

READER = """
import asyncio, json, sys, time
from exospherehost import StateManager

async def main():
    url, key, ns, ids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
    latencies = []
    started = time.time()
    async with StateManager(ns, state_manager_uri=url, key=key) as sm:
        async def follow(state_id):
            async for chunk in sm.stream_state(state_id):
                now = time.time()
                latencies.append((float(chunk.text), now - float(chunk.text)))
        await asyncio.gather(*(follow(i) for i in ids))
    print(json.dumps({"started": started, "pairs": latencies}))

asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def written_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def postgres_counters(database_url: str) -> dict[str, float]:
    import asyncpg

    async def read() -> dict[str, float]:
        conn = await asyncpg.connect(database_url)
        try:
            row = await conn.fetchrow(
                "SELECT xact_commit, tup_inserted, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
            await conn.execute("SELECT pg_stat_clear_snapshot()")
        finally:
            await conn.close()
        assert row is not None
        return {"commits": float(row["xact_commit"]), "rows": float(row["tup_inserted"]), "wal": float(row["wal"])}

    return asyncio.run(read())


def _stream_writes(url: str) -> float:
    """The server's `exosphere_stream_writes_total`: transactions that stored chunks."""
    text = httpx.get(url + "/metrics", headers={"x-api-key": TEST_API_KEY}, timeout=10).text
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("exosphere_stream_writes_total")
    )


def _stored_chunks(database_url: str) -> list[tuple[int, str]]:
    """(written_at, text) of every chunk stored: when the server committed it, and when it was sent."""
    if database_url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return [(int(w), str(t)) for w, t in conn.execute("SELECT written_at, text FROM stream_chunks")]
    import asyncpg

    async def read() -> list[tuple[int, str]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [(int(r[0]), str(r[1])) for r in await conn.fetch("SELECT written_at, text FROM stream_chunks")]
        finally:
            await conn.close()

    return asyncio.run(read())


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1] if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0, help="chunks per second per node")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--postgres", help="an admin URL: run on a fresh PostgreSQL database instead of SQLite")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="stream-bench-"))
    database_url = fresh_postgres_url(args.postgres) if args.postgres else sqlite_url(work)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STATE_MANAGER_SECRET": TEST_API_KEY, "SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY}
    server_log = work / "server.log"
    command = [sys.executable, "-m", "exosphere_server", "server", "--port", str(port), "--database-url", database_url]
    with open(server_log, "ab") as log:
        server = subprocess.Popen([*command, "--log-level", "INFO"], env=env, stdout=log, stderr=log)
    runtime: subprocess.Popen[bytes] | None = None
    try:
        _wait_healthy(url, server)
        api = httpx.Client(base_url=f"{url}/v0/namespace/{NS}", headers={"x-api-key": TEST_API_KEY}, timeout=30)
        (work / "runtime.py").write_text(RUNTIME)
        runtime_env = {**env, "EXOSPHERE_STATE_MANAGER_URI": url, "EXOSPHERE_API_KEY": TEST_API_KEY}
        with open(work / "runtime.log", "ab") as log:
            runtime = subprocess.Popen(
                [sys.executable, str(work / "runtime.py"), NS, str(args.rate), str(args.seconds), str(args.nodes)],
                env=runtime_env,
                stdout=log,
                stderr=log,
            )
        _wait_for(lambda: api.get("/nodes/").json()["count"] == 1, "the runtime to register")
        graph = {
            "secrets": {},
            "nodes": [{"node_name": "Streamer", "namespace": NS, "identifier": "s", "inputs": {"n": "1"}}],
        }
        api.put("/graph/stream", json=graph).raise_for_status()

        writes_before = _stream_writes(url)
        cpu_before, io_before = cpu_seconds(server.pid), written_bytes(server.pid)
        runtime_cpu_before = cpu_seconds(runtime.pid)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        pg_before = postgres_counters(database_url) if args.postgres else {}
        started = time.monotonic()
        run_ids = [api.post("/graph/stream/trigger", json={}).json()["run_id"] for _ in range(args.nodes)]
        state_ids = [_first_state(api, run_id) for run_id in run_ids]
        reader = subprocess.run(
            [sys.executable, "-c", READER, url, TEST_API_KEY, NS, ",".join(state_ids)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        elapsed = time.monotonic() - started
        cpu_used, io_used = cpu_seconds(server.pid) - cpu_before, written_bytes(server.pid) - io_before
        runtime_cpu = cpu_seconds(runtime.pid) - runtime_cpu_before
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        reader_cpu = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
        pg_used = {k: v - pg_before[k] for k, v in postgres_counters(database_url).items()} if args.postgres else {}
        stream_writes = _stream_writes(url) - writes_before
        live_from = json.loads(reader.stdout)["started"] + WARM_UP_S
        stored_ms = sorted(
            written - float(text) * 1000 for written, text in _stored_chunks(database_url) if float(text) >= live_from
        )
        uploads = sum(1 for line in server_log.read_text().splitlines() if '"POST"' in line and '/stream"' in line)
    finally:
        for process in (runtime, server):
            if process is not None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)

    read = json.loads(reader.stdout)
    pairs = read["pairs"]
    # Chunks sent before the reader had connected arrive by catching up, not live: left out.
    latencies_ms = sorted(latency * 1000 for sent, latency in pairs if sent >= live_from)
    expected = int(args.rate * args.seconds) * args.nodes
    sent_times = [sent for sent, _ in pairs]
    streaming_s = max(sent_times) - min(sent_times)  # the window the nodes streamed in
    figures: dict[str, Any] = {
        "backend": "postgresql" if args.postgres else "sqlite",
        "nodes": args.nodes,
        "rate_per_node": args.rate,
        "seconds": args.seconds,
        "chunks_received": len(pairs),
        "chunks_expected": expected,
        "latency_ms_p50": percentile(latencies_ms, 0.50),
        "latency_ms_p90": percentile(latencies_ms, 0.90),
        "latency_ms_p99": percentile(latencies_ms, 0.99),
        "latency_ms_max": latencies_ms[-1] if latencies_ms else 0.0,
        "stored_ms_p50": percentile(stored_ms, 0.50),
        "stored_ms_p99": percentile(stored_ms, 0.99),
        "server_cpu_share_of_one_core": cpu_used / streaming_s,
        "runtime_cpu_share_of_one_core": runtime_cpu / streaming_s,
        "reader_cpu_share_of_one_core": reader_cpu / streaming_s,
        "chunks_stored_per_s": len(pairs) / streaming_s,
        "stream_transactions_per_s": stream_writes / streaming_s,
        "upload_requests_per_node_per_s": uploads / args.nodes / streaming_s if uploads else None,
        "elapsed_s": elapsed,
        "cpus": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
    }
    if args.postgres:
        figures |= {f"database_{k}_per_s": v / streaming_s for k, v in pg_used.items()}
    else:
        figures["server_disk_write_bytes_per_s"] = io_used / streaming_s
    for name, value in figures.items():
        print(f"{name:34} {value:.2f}" if isinstance(value, float) else f"{name:34} {value}")
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (results / f"{stamp}-stream-{figures['backend']}.json").write_text(json.dumps(figures, indent=2) + "\n")


def _wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    def healthy() -> bool:
        try:
            return httpx.get(url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    _wait_for(healthy, "the server to start", lambda: server.poll() is None)


def _first_state(api: httpx.Client, run_id: str) -> str:
    found: list[dict[str, Any]] = []

    def listed() -> bool:
        found[:] = api.get(f"/run/{run_id}/states").json()["states"]
        return bool(found)

    _wait_for(listed, f"run {run_id}'s state")
    return str(found[0]["state_id"])


def _wait_for(check: Any, what: str, alive: Any = lambda: True) -> None:
    deadline = time.monotonic() + 60
    while not check():
        if not alive() or time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
