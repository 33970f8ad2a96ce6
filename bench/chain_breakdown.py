"""Where the time of `make bench`'s chain goes outside its hops, per run.

    .venv/bin/python bench/chain_breakdown.py sqlite|postgres [tuned|defaults] [--runs 40]

Runs the chain of 20 of `bench/run.py` (A) on a fresh server and database, and splits each run's
wall time (trigger sent to `wait_for_run` returning) into: the trigger's request; from its answer to
the first `execute` (the runtime's wake-up and claim); the hops between the first and the last
`execute`; from the last `execute` to the run's event stream telling that it finished (the result's
request and the run feed's read); and the `GET run` that `wait_for_run` sends last. Prints the median
and range of each (the first two runs left out), with the server's CPU per run. PostgreSQL needs
EXOSPHERE_BENCH_POSTGRES_URL. To measure another commit's server, put its `state-manager/src` first
on PYTHONPATH.
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
from pathlib import Path

from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url
from run import CHAIN_LENGTH, HERE, User, _cpu_seconds

PIECES = [
    "trigger",
    "answer -> first execute",
    "hop (first to last execute)",
    "last execute -> finished event",
    "GET run",
    "wall / hop",
]


async def chain_runs(user: User, runs: int) -> list[list[float]]:
    """Per run, the pieces in milliseconds (the hop as a mean over the run's hops)."""
    await user.wait_for_runtime()
    last = CHAIN_LENGTH - 1
    nodes = [
        user.node(
            f"h{i}",
            "Hop",
            {"x": "0" if i == 0 else f"${{{{ h{i - 1}.outputs.x }}}}"},
            [f"h{i + 1}"] if i < last else [],
        )
        for i in range(CHAIN_LENGTH)
    ]
    await user.sm.upsert_graph("chain", nodes, secrets={})
    rows = []
    for _ in range(runs):
        sent = time.time()
        run_id = (await user.sm.trigger("chain"))["run_id"]
        answered = time.time()
        async for _event in user.sm.watch_run(run_id):  # what `wait_for_run` does, in its two steps
            pass
        told = time.time()
        await user.sm.get_run(run_id)
        done = time.time()
        at = {s["identifier"]: float(s["outputs"]["at"]) for s in await user.sm.get_run_states(run_id)}
        first, final = at["h0"], at[f"h{last}"]
        rows.append(
            [
                (answered - sent) * 1e3,
                (first - answered) * 1e3,
                (final - first) * 1e3 / last,
                (told - final) * 1e3,
                (done - told) * 1e3,
                (done - sent) * 1e3 / CHAIN_LENGTH,
            ]
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("backend", choices=["sqlite", "postgres"])
    parser.add_argument("runtime", nargs="?", choices=["tuned", "defaults"], default="tuned")
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    namespace = f"breakdown-{args.runtime}"
    with tempfile.TemporaryDirectory() as tmp:
        url = (
            sqlite_url(Path(tmp))
            if args.backend == "sqlite"
            else fresh_postgres_url(os.environ["EXOSPHERE_BENCH_POSTGRES_URL"])
        )
        with ServerProcess(url, log_path=Path(tmp) / "server.log") as server:
            assert server.process is not None
            env = {
                **os.environ,
                "EXOSPHERE_STATE_MANAGER_URI": server.url,
                "EXOSPHERE_API_KEY": server.api_key,
                "EXOSPHERE_LOG_LEVEL": "ERROR",
            }
            runtime = subprocess.Popen([sys.executable, str(HERE / "sdk_runtime.py"), namespace, args.runtime], env=env)
            try:
                user = User(server, namespace, runtime.pid)
                cpu = _cpu_seconds(server.process.pid)

                async def measure() -> list[list[float]]:
                    try:
                        return await chain_runs(user, args.runs)
                    finally:
                        await user.aclose()

                rows = asyncio.run(measure())[2:]
                cpu_per_run = (_cpu_seconds(server.process.pid) - cpu) * 1e3 / args.runs
            finally:
                runtime.kill()
                runtime.wait()
    print(f"{args.backend} {args.runtime}, load {os.getloadavg()[0]:.2f}, server CPU {cpu_per_run:.1f} ms per run")
    for index, piece in enumerate(PIECES):
        values = sorted(row[index] for row in rows)
        print(f"  {piece:32s} median {statistics.median(values):6.2f}   {values[0]:6.2f} to {values[-1]:6.2f} ms")


if __name__ == "__main__":
    main()
