"""`make bench`: the speed a user of Exosphere feels, end to end through the SDK, recorded with the commit.

    .venv/bin/python bench/run.py [--backend sqlite|postgres|both] [--runtimes tuned,defaults]
                                  [--rounds 1] [--all] [--peers celery]

For each backend and runtime configuration: a fresh server and database, a runtime process
(`bench/sdk_runtime.py`: `tuned` passes the project's arguments, `defaults` the seed's default
`Runtime(...)` arguments, `published` runs the published `exospherehost==0.0.3` client with the tuned
arguments; `ts-tuned` and `ts-defaults` are the same two configurations of the TypeScript runtime,
`typescript-sdk/bench/runtime.ts`, which needs the SDK built there: `npm ci && npm run build`) and
this process as the user, driving it with the SDK's `StateManager`:

(A) hop: a chain of 20 trivial nodes, 10 runs. `wall/hop` is the time from sending the trigger to
    `wait_for_run` returning, / 20 (median of the runs); `hop p50`/`p99` are the times between the
    `execute` calls of consecutive nodes, as the runtime's clock saw them (all hops of all runs).
(B) 2,000 single-node runs, triggered by the user (16 triggers in flight) and run: states/s from the
    first trigger sent to the moment the user sees the last run finished. `drain` is the same for
    2,000 runs triggered in advance and made ready at one instant (`start_delay`): states/s from that
    instant, i.e. what the runtime and server do without the cost of triggering.
(B bulk) the same 2,000 runs started the way a batch is started: `trigger_many`, BULK_RUNS runs per
    request, two requests in flight; states/s from the first request to the last run seen finished.
(C) one node fanning out to 200, each followed by a trivial node, then a `unites` node: trigger sent
    to `wait_for_run` returning, median of 5 runs.

Every run writes `bench/results/<date>-<commit>.json` (the figures, the commit and whether the tree
was dirty, the date, the load average before and after, the CPU count) and prints a table. With
`--rounds N` the configurations are run N times in turn (A B A B ...), so that a drift of the shared
machine touches all alike; the table shows medians and ranges. `--all` then runs the other benchmark
scripts of this folder. `--peers celery` then runs the same workloads the Celery way
(`bench/peers/celery/run.sh`, its own venv and redis-server) and prints one table of both.
PostgreSQL needs EXOSPHERE_BENCH_POSTGRES_URL (`make bench` sets it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import exospherehost
import httpx
from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url
from exospherehost import GraphNodeModel, StateManager, UnitesModel
from results_table import commit_and_dirty, join_rounds, progress_line, table_lines, write_record

HERE = Path(__file__).parent
REPO = HERE.parent
RESULTS = HERE / "results"
OTHER_BENCHMARKS = [
    "server_bench.py",
    "dashboard_bench.py",
    "graph_validation_bench.py",
    "scale_bench.py",
    "trigger_bench.py",
    "payload_bench.py",
]
RUNTIMES = ("tuned", "defaults", "published", "ts-tuned", "ts-defaults")
PEERS = ("celery",)
TYPESCRIPT_SDK = REPO / "typescript-sdk"

CHAIN_LENGTH = 20
CHAIN_RUNS = 10
INDEPENDENT = 2000
TRIGGERS_IN_FLIGHT = 16
BULK_RUNS = 200
FAN_WIDTH = 200
FAN_RUNS = 5
NODES = ["Hop", "Fan", "Gather"]


class User:
    """The benchmark's user: upserts graphs, triggers runs and waits for them through the SDK."""

    def __init__(self, server: ServerProcess, namespace: str, runtime_pid: int) -> None:
        self.namespace = namespace
        assert server.process is not None
        self.pids = {"server": server.process.pid, "runtime": runtime_pid}
        self.sm = StateManager(namespace, state_manager_uri=server.url, key=server.api_key, timeout=120)
        # Counting finished runs has no SDK call; the run list's filter does it in one request.
        self.http = httpx.AsyncClient(
            base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=120
        )

    async def aclose(self) -> None:
        await self.sm.aclose()
        await self.http.aclose()

    def node(
        self, ident: str, name: str, inputs: dict[str, str], nxt: list[str] | None = None, unites: str | None = None
    ) -> GraphNodeModel:
        return GraphNodeModel(
            node_name=name,
            namespace=self.namespace,
            identifier=ident,
            inputs=inputs,
            next_nodes=nxt or [],
            unites=UnitesModel(identifier=unites) if unites else None,
        )

    async def wait_for_runtime(self) -> None:
        deadline = time.monotonic() + 60
        while len((await self.http.get("/nodes/")).json()["nodes"]) < len(NODES):
            if time.monotonic() > deadline:
                raise TimeoutError("the runtime did not register its nodes within 60 s")
            await asyncio.sleep(0.1)

    async def run_to_end(self, graph: str) -> tuple[str, float]:
        """Trigger `graph` and wait for its end; returns the run id and the seconds that took."""
        started = time.perf_counter()
        run_id = (await self.sm.trigger(graph))["run_id"]
        summary = await self.sm.wait_for_run(run_id, timeout=300)
        elapsed = time.perf_counter() - started
        if summary["status"] != "SUCCESS":
            raise RuntimeError(f"run {run_id} of {graph} ended {summary['status']}")
        return run_id, elapsed

    async def chain(self) -> dict[str, float]:
        """(A): wall time per hop, and the gaps between consecutive `execute` calls."""
        await self.sm.upsert_graph(
            "chain",
            [
                self.node(
                    f"h{i}",
                    "Hop",
                    {"x": "0" if i == 0 else f"${{{{ h{i - 1}.outputs.x }}}}"},
                    [f"h{i + 1}"] if i < CHAIN_LENGTH - 1 else [],
                )
                for i in range(CHAIN_LENGTH)
            ],
            secrets={},
        )
        walls: list[float] = []
        gaps: list[float] = []
        for _ in range(CHAIN_RUNS):
            run_id, elapsed = await self.run_to_end("chain")
            walls.append(elapsed * 1000 / CHAIN_LENGTH)
            at = {s["identifier"]: float(s["outputs"]["at"]) for s in await self.sm.get_run_states(run_id)}
            gaps += [(at[f"h{i}"] - at[f"h{i - 1}"]) * 1000 for i in range(1, CHAIN_LENGTH)]
        gaps.sort()
        return {
            "hop_wall_ms": statistics.median(walls),
            "hop_p50_ms": statistics.median(gaps),
            "hop_p99_ms": gaps[max(0, round(len(gaps) * 0.99) - 1)],
        }

    async def trigger_many(self, graph: str, count: int, release: float | None = None) -> list[str]:
        """Trigger `count` runs, TRIGGERS_IN_FLIGHT at a time; with `release` (a `perf_counter()` time),
        each with the start delay that makes it ready at that instant."""
        limit = asyncio.Semaphore(TRIGGERS_IN_FLIGHT)

        async def one() -> str:
            async with limit:
                delay_ms = 0 if release is None else max(0, int((release - time.perf_counter()) * 1000))
                return str((await self.sm.trigger(graph, start_delay=delay_ms))["run_id"])

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def seen_all_finished(self, graph: str, run_ids: list[str]) -> float:
        """Wait for every run, the last one first (long-poll); returns `perf_counter()` when all were seen done."""
        await self.sm.wait_for_run(run_ids[-1], timeout=600)
        while True:
            answer = await self.http.get("/runs/1/1", params={"graph_name": graph, "status": "SUCCESS"})
            answer.raise_for_status()
            if answer.json()["total"] >= len(run_ids):
                return time.perf_counter()
            await asyncio.sleep(0.01)

    async def independent(self) -> tuple[float, float]:
        """(B): states/s from the first trigger to the last run seen finished, and the seconds triggering took."""
        await self.sm.upsert_graph("single", [self.node("one", "Hop", {"x": "1"})], secrets={})
        started = time.perf_counter()
        run_ids = await self.trigger_many("single", INDEPENDENT)
        triggering = time.perf_counter() - started
        return INDEPENDENT / (await self.seen_all_finished("single", run_ids) - started), triggering

    async def bulk(self) -> float:
        """(B bulk): states/s from the first `trigger_many` request to the last run seen finished."""
        await self.sm.upsert_graph("bulk", [self.node("one", "Hop", {"x": "1"})], secrets={})
        limit = asyncio.Semaphore(2)

        async def one_request(count: int) -> list[str]:
            async with limit:
                return [str(run["run_id"]) for run in await self.sm.trigger_many("bulk", [{}] * count)]

        started = time.perf_counter()
        batches = await asyncio.gather(*(one_request(BULK_RUNS) for _ in range(INDEPENDENT // BULK_RUNS)))
        run_ids = [run_id for batch in batches for run_id in batch]
        return len(run_ids) / (await self.seen_all_finished("bulk", run_ids) - started)

    async def drain(self, triggering: float) -> dict[str, float]:
        """States/s of runs made ready at one instant, from that instant to the last run seen finished,
        and the CPU time the server and the runtime spent per state meanwhile.

        `triggering` is how long (B) took to send its triggers: the release is planned well after that.
        """
        await self.sm.upsert_graph("queued", [self.node("one", "Hop", {"x": "1"})], secrets={})
        release = time.perf_counter() + 2 + 2 * triggering
        run_ids = await self.trigger_many("queued", INDEPENDENT, release)
        if time.perf_counter() > release:
            raise RuntimeError("triggering took longer than the planned release")
        await asyncio.sleep(release - time.perf_counter())
        cpu = {name: _cpu_seconds(pid) for name, pid in self.pids.items()}
        figures = {"drain_states_per_s": INDEPENDENT / (await self.seen_all_finished("queued", run_ids) - release)}
        for name, pid in self.pids.items():
            figures[f"drain_{name}_cpu_ms_per_state"] = (_cpu_seconds(pid) - cpu[name]) * 1000 / INDEPENDENT
        return figures

    async def fan_out(self) -> float:
        """(C): milliseconds from trigger to the `unites` node's run end, median of FAN_RUNS."""
        await self.sm.upsert_graph(
            "fan",
            [
                self.node("start", "Hop", {"x": "0"}, ["fan"]),
                self.node("fan", "Fan", {"n": str(FAN_WIDTH)}, ["leaf"]),
                self.node("leaf", "Hop", {"x": "${{ fan.outputs.x }}"}, ["gather"]),
                self.node("gather", "Gather", {"n": str(FAN_WIDTH)}, unites="start"),
            ],
            secrets={},
        )
        return statistics.median([(await self.run_to_end("fan"))[1] * 1000 for _ in range(FAN_RUNS)])


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _measure(server: ServerProcess, namespace: str, runtime_pid: int) -> dict[str, float]:
    user = User(server, namespace, runtime_pid)
    try:
        await user.wait_for_runtime()
        figures = await user.chain()
        figures["rss_start_mb"] = _rss_mb(runtime_pid)
        figures["states_per_s"], figures["triggering_s"] = await user.independent()
        figures["bulk_states_per_s"] = await user.bulk()
        figures |= await user.drain(figures["triggering_s"])
        figures["rss_end_mb"] = _rss_mb(runtime_pid)
        figures["fan_out_ms"] = await user.fan_out()
        return figures
    finally:
        await user.aclose()


def measure(backend: str, runtime: str, python: str, workdir: Path, runtime_sdk: str | None) -> dict[str, Any]:
    """One configuration on a fresh server and database: its figures, with the load after it."""
    directory = workdir / f"{backend}-{runtime}-{time.monotonic_ns()}"
    directory.mkdir()
    if backend == "sqlite":
        url = sqlite_url(directory)
    else:
        url = fresh_postgres_url(os.environ["EXOSPHERE_BENCH_POSTGRES_URL"])
    namespace = f"bench-{runtime}"
    with ServerProcess(url, log_path=directory / "server.log") as server:
        env = {
            **os.environ,
            "EXOSPHERE_STATE_MANAGER_URI": server.url,
            "EXOSPHERE_API_KEY": server.api_key,
            "EXOSPHERE_LOG_LEVEL": "ERROR",
        }
        if runtime == "published":
            env.pop("PYTHONPATH", None)
        elif runtime_sdk:
            env["PYTHONPATH"] = runtime_sdk
        arguments = "defaults" if runtime.endswith("defaults") else "tuned"
        if runtime.startswith("ts-"):
            command = ["node", "--import", "tsx", "bench/runtime.ts", namespace, arguments]
            process = subprocess.Popen(command, env=env, cwd=TYPESCRIPT_SDK)
        else:
            process = subprocess.Popen([python, str(HERE / "sdk_runtime.py"), namespace, arguments], env=env)
        try:
            figures = asyncio.run(_measure(server, namespace, process.pid))
        finally:
            process.kill()
            process.wait()
    return {"backend": backend, "runtime": runtime, **figures, "load_after": list(os.getloadavg())}


def print_table(record: dict[str, Any]) -> None:
    print("\n" + "\n".join(table_lines(record)))


def run_peer(peer: str, round_number: int, workdir: Path) -> dict[str, Any]:
    """One round of `bench/peers/<peer>/run.sh`: its record, its results numbered `round_number`."""
    print(f"round {round_number}: peer {peer}", flush=True)
    directory = workdir / f"{peer}-{round_number}"
    subprocess.run(
        [str(HERE / "peers" / peer / "run.sh"), "--rounds", "1", "--results-dir", str(directory)], check=True
    )
    (written,) = directory.glob("*.json")
    record: dict[str, Any] = json.loads(written.read_text())
    for result in record["results"]:
        result["round"] = round_number
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--runtimes", default="tuned,defaults", help=f"comma-separated, of {', '.join(RUNTIMES)}")
    parser.add_argument("--rounds", type=int, default=1, help="how many times to run every configuration")
    parser.add_argument("--all", action="store_true", help="then run the other benchmarks of bench/")
    parser.add_argument(
        "--peers",
        default="",
        help=f"comma-separated, of {', '.join(PEERS)}: then run the same workloads on those peers "
        "(bench/peers/NAME/run.sh, same rounds) and print one table of both",
    )
    parser.add_argument(
        "--runtime-sdk",
        metavar="DIR",
        help="run the runtime with the exospherehost package found in DIR (e.g. an older "
        "checkout's python-sdk/src), to compare runtimes under the same user",
    )
    args = parser.parse_args()
    # Stopped with SIGTERM, still stop the servers and runtimes this started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    runtimes = args.runtimes.split(",")
    peers = [peer for peer in args.peers.split(",") if peer]
    if unknown := set(peers) - set(PEERS):
        parser.error(f"unknown peer(s) {', '.join(sorted(unknown))}: choose from {', '.join(PEERS)}")
    if unknown := set(runtimes) - set(RUNTIMES):
        parser.error(f"unknown runtime(s) {', '.join(sorted(unknown))}: choose from {', '.join(RUNTIMES)}")
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL"):
        if args.backend == "postgres":
            sys.exit("set EXOSPHERE_BENCH_POSTGRES_URL (an admin URL) or use `make bench`")
        print("postgres: skipped (set EXOSPHERE_BENCH_POSTGRES_URL or use `make bench`)")
        backends.remove("postgres")
    pythons = {runtime: sys.executable for runtime in RUNTIMES}
    if any(r.startswith("ts-") for r in runtimes) and not (TYPESCRIPT_SDK / "dist" / "index.js").exists():
        sys.exit("the TypeScript runtimes need the SDK built: cd typescript-sdk && npm ci && npm run build")
    if "published" in runtimes:
        pythons["published"] = subprocess.run(
            [str(REPO / "scripts" / "published-client.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
    record: dict[str, Any] = {
        **commit_and_dirty(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/run.py", *sys.argv[1:]]),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "sdk": str(Path(exospherehost.__file__).parent),
        "runtime_sdk": args.runtime_sdk,
        "load_before": list(os.getloadavg()),
        "sizes": {
            "chain": CHAIN_LENGTH,
            "chain_runs": CHAIN_RUNS,
            "independent": INDEPENDENT,
            "triggers_in_flight": TRIGGERS_IN_FLIGHT,
            "fan_width": FAN_WIDTH,
            "fan_runs": FAN_RUNS,
        },
        "results": [],
    }
    peer_rounds: dict[str, list[dict[str, Any]]] = {peer: [] for peer in peers}
    with tempfile.TemporaryDirectory() as tmp:
        for round_number in range(1, args.rounds + 1):
            for backend in backends:
                for runtime in runtimes:
                    figures = measure(backend, runtime, pythons[runtime], Path(tmp), args.runtime_sdk)
                    result = {"round": round_number, **figures}
                    record["results"].append(result)
                    print(progress_line(round_number, result), flush=True)
            # A peer's round right after ours, so that a drift of the shared machine touches both alike.
            for peer in peers:
                peer_rounds[peer].append(run_peer(peer, round_number, Path(tmp)))
    record["load_after"] = list(os.getloadavg())
    path = write_record(record, RESULTS)
    print_table(record)
    print(f"\nwritten to {path.relative_to(REPO)}")
    for peer, records in peer_rounds.items():
        theirs = join_rounds(records, " ".join(["bench/run.py", *sys.argv[1:]]))
        print(f"written to {write_record(theirs, RESULTS, peer).relative_to(REPO)}")
        both = {**record, "results": record["results"] + theirs["results"]}
        print(f"\nboth in one run, {peer} {theirs['versions'][peer]} after ours in each round:")
        print_table(both)
    if args.all:
        failed = []
        for name in OTHER_BENCHMARKS:
            print(f"\n== {name}", flush=True)
            if subprocess.run([sys.executable, str(HERE / name)], check=False).returncode != 0:
                failed.append(name)
        if failed:
            sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
