"""What starting runs costs: one trigger at a time, with an idempotency key, and in bulk (`trigger-many`).

    .venv/bin/python bench/trigger_bench.py [--backend sqlite|postgres|both] [--runs 1000]
    .venv/bin/python bench/trigger_bench.py --before-src /tmp/old-checkout --rounds 3   # A B A B ...

On a fresh server and database per backend, with the SDK's `StateManager` as the user:

* **trigger**: `--runs` triggers one after another (one in flight) of a one-node graph that no runtime
  serves (the states only queue): wall time per trigger as the client sees it, and the server's CPU
  time per trigger (user + system, from /proc) — the server's own cost of a trigger.
* **trigger + key**: the same, each trigger with its own idempotency key.
* **trigger_many**: 2 x 1,000 runs through `StateManager.trigger_many` (one request per 1,000):
  wall and server CPU per run.
* **(B) via trigger_many**: 2,000 single-node runs started with `trigger_many` and run by the tuned
  runtime of `bench/sdk_runtime.py`: states/s from the first request to the last run seen finished
  (the (B) of `bench/run.py`, which triggers one run per request, 16 in flight).

`--before-src DIR` also measures the server of another checkout (its `state-manager/src` and
`python-sdk/src`), alternating with this one `--rounds` times (A B A B ...), so that a drift of the
shared machine touches both alike.

Writes `bench/results/<date>-<commit>-triggers.json` with the load average, and prints a table.
PostgreSQL needs EXOSPHERE_BENCH_POSTGRES_URL (`make bench` sets it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url
from exospherehost import StateManager
from run import HERE, INDEPENDENT, RESULTS, User, _cpu_seconds, _git

BULK = 1000


async def _sequential_triggers(sm: StateManager, pid: int, runs: int, keyed: bool) -> dict[str, float]:
    cpu, started = _cpu_seconds(pid), time.perf_counter()
    for i in range(runs):
        await sm.trigger("queued", idempotency_key=f"key-{i}-{time.monotonic_ns()}" if keyed else None)
    wall, spent = time.perf_counter() - started, _cpu_seconds(pid) - cpu
    return {"wall_ms": wall * 1000 / runs, "server_cpu_ms": spent * 1000 / runs}


async def _bulk_triggers(sm: StateManager, pid: int, runs: int) -> dict[str, float]:
    cpu, started = _cpu_seconds(pid), time.perf_counter()
    for _ in range(0, runs, BULK):
        await sm.trigger_many("queued", [{} for _ in range(BULK)])
    wall, spent = time.perf_counter() - started, _cpu_seconds(pid) - cpu
    return {"wall_ms": wall * 1000 / runs, "server_cpu_ms": spent * 1000 / runs}


async def _independent_via_bulk(user: User) -> float:
    await user.sm.upsert_graph("single", [user.node("one", "Hop", {"x": "1"})], secrets={})
    started = time.perf_counter()
    run_ids: list[str] = []
    for _ in range(0, INDEPENDENT, BULK):
        run_ids += [r["run_id"] for r in await user.sm.trigger_many("single", [{} for _ in range(BULK)])]
    return INDEPENDENT / (await user.seen_all_finished("single", run_ids) - started)


async def _measure(server: ServerProcess, namespace: str, runtime_pid: int, runs: int) -> dict[str, Any]:
    user = User(server, namespace, runtime_pid)
    pid = user.pids["server"]
    try:
        await user.wait_for_runtime()
        # Nodes named like no runtime's: these runs only queue, so the server's CPU is the triggers'.
        await user.sm.upsert_graph("queued", [user.node("one", "Nobody", {"x": "1"})], secrets={})
        await _sequential_triggers(user.sm, pid, 50, keyed=False)  # warm up: connections, pinned graph
        figures: dict[str, Any] = {
            "trigger": await _sequential_triggers(user.sm, pid, runs, keyed=False),
            "trigger_keyed": await _sequential_triggers(user.sm, pid, runs, keyed=True),
            "trigger_many": await _bulk_triggers(user.sm, pid, 2 * BULK),
        }
        figures["independent_via_trigger_many_states_per_s"] = await _independent_via_bulk(user)
        return figures
    finally:
        await user.aclose()


def measure(backend: str, runs: int, workdir: Path, source: Path | None = None) -> dict[str, Any]:
    """One backend on a fresh server and database; `source`: another checkout's server instead of this one."""
    directory = workdir / f"{backend}-{time.monotonic_ns()}"
    directory.mkdir()
    server_env = {}
    if source is not None:
        server_env["PYTHONPATH"] = f"{source / 'state-manager' / 'src'}:{source / 'python-sdk' / 'src'}"
    if backend == "sqlite":
        url = sqlite_url(directory)
    else:
        url = fresh_postgres_url(os.environ["EXOSPHERE_BENCH_POSTGRES_URL"])
    with ServerProcess(url, log_path=directory / "server.log", env=server_env) as server:
        env = {
            **os.environ,
            "EXOSPHERE_STATE_MANAGER_URI": server.url,
            "EXOSPHERE_API_KEY": server.api_key,
            "EXOSPHERE_LOG_LEVEL": "ERROR",
        }
        process = subprocess.Popen([sys.executable, str(HERE / "sdk_runtime.py"), "bench-triggers", "tuned"], env=env)
        try:
            figures = asyncio.run(_measure(server, "bench-triggers", process.pid, runs))
        finally:
            process.kill()
            process.wait()
    server = "this checkout" if source is None else str(source)
    return {"backend": backend, "server": server, **figures, "load_after": list(os.getloadavg())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--runs", type=int, default=1000, help="sequential triggers per measure")
    parser.add_argument("--before-src", type=Path, help="another checkout: measure its server too, alternating")
    parser.add_argument("--rounds", type=int, default=1, help="how many times to measure each server")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL"):
        sys.exit("PostgreSQL needs EXOSPHERE_BENCH_POSTGRES_URL (`make bench` sets it), or pass --backend sqlite")
    load_before = list(os.getloadavg())
    with tempfile.TemporaryDirectory() as workdir:
        sources: list[Path | None] = [None] if args.before_src is None else [args.before_src, None]
        results = [
            measure(backend, args.runs, Path(workdir), source)
            for backend in backends
            for _ in range(args.rounds)
            for source in sources
        ]
    commit = _git("rev-parse", "--short", "HEAD")
    record = {
        "benchmark": "triggers",
        "commit": commit,
        "dirty": bool(_git("status", "--porcelain")),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_before": load_before,
        "cpus": os.cpu_count(),
        "results": results,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{commit}-triggers.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"commit {commit}{' (dirty)' if record['dirty'] else ''}, load before {load_before[0]:.2f}")
    print(f"{'backend':10} {'measure':14} {'wall ms/run':>12} {'server CPU ms/run':>18}  server")
    for result in results:
        for name in ("trigger", "trigger_keyed", "trigger_many"):
            row = result[name]
            print(
                f"{result['backend']:10} {name:14} {row['wall_ms']:12.3f} {row['server_cpu_ms']:18.3f}"
                f"  {result['server']}"
            )
        rate = result["independent_via_trigger_many_states_per_s"]
        print(f"{result['backend']:10} (B) via trigger_many: {rate:.0f} states/s  {result['server']}")
    print(f"written to {path.relative_to(HERE.parent)}")


if __name__ == "__main__":
    main()
