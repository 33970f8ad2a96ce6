"""`make bench-peers`: the three workloads of `make bench`, done the Celery way on the same machine.

    bench/peers/celery/run.sh [--workers tuned,default] [--rounds 1] [--results-dir DIR]

(run.sh builds this folder's own virtual environment with Celery 5 and Redis's client, and checks
that `redis-server` is installed, then runs this file with it.)

A private `redis-server` (broker and result backend) on a free loopback port, its data in a temporary
folder, stopped at the end and flushed between configurations; per configuration, a fresh Celery
worker (`celery -A tasks worker ...`, see WORKERS); this process is the user, with Celery's client:

(A) hop: a Celery `chain` of 20 `hop` tasks, 10 runs. The chain is declared up front, as a graph is,
    and the worker that finishes one task publishes the next one with its result, as a completion
    creates the next state. `wall/hop` is `apply_async` to `get()` returning, / 20 (median of the runs);
    `hop p50`/`p99` are the gaps between consecutive tasks' start times, from the worker's clock.
(B) 2,000 `hop.delay()` calls from one thread, then `get()` of them all: states/s from the first call.
    `drain` is the same for 2,000 tasks already queued while the worker consumed nothing
    (`cancel_consumer`), from the instant it is told to consume again (`add_consumer`).
(B bulk) the same 2,000 tasks sent as one `group`: Celery still publishes a message per task.
(C) `chain(hop, fan)`, where `fan` replaces itself with a `chord` of 200 `hop`s and a `gather` callback
    (the width is decided at run time, as a `Fan` node's is): `apply_async` to `get()` returning,
    median of 5 runs.

The CPU columns are the worker's processes ("runtime") and redis-server ("server") during the drain,
per task. Writes `bench/results/<date>-<commit>-celery.json` with the load average and prints the
table of `bench/run.py`.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from results_table import commit_and_dirty, progress_line, table_lines, write_record  # noqa: E402

CHAIN_LENGTH = 20
CHAIN_RUNS = 10
INDEPENDENT = 2000
FAN_WIDTH = 200
FAN_RUNS = 5
QUEUE = "celery"

# The worker's command-line arguments per configuration. `default` is what `celery -A tasks worker`
# gives: the prefork pool with one child per CPU and a prefetch of 4 per child. `tuned` is the best
# of those measured on this machine (docs/benchmarks.md, "Peers: Celery"): one process running tasks
# in its own loop (no hand-off to a child process), and no background chatter between workers.
# `threads` and `prefork` are the other candidates that were measured for `tuned`; run them with --workers.
QUIET = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
WORKERS: dict[str, list[str]] = {
    "default": [],
    "tuned": ["--pool", "solo", *QUIET],
    "threads": ["--pool", "threads", "--concurrency", "8", *QUIET],
    "prefork": ["--concurrency", "2", "--prefetch-multiplier", "16", *QUIET],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a prefork worker's children do the work)."""
    tree = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            tree += process_tree(int(child))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in process_tree(pid))


def tree_rss_mb(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


class Redis:
    """A redis-server of our own on a free loopback port, with Redis's default settings otherwise."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)],
            stdout=(directory / "redis.log").open("w"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start; see redis.log") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


class Worker:
    """One Celery worker process running `tasks.py` with a configuration's arguments."""

    def __init__(self, configuration: str, redis_url: str, log: Path) -> None:
        command = [str(Path(sys.executable).parent / "celery"), "-A", "tasks", "worker", "--loglevel=WARNING"]
        self.process = subprocess.Popen(
            [*command, *WORKERS[configuration]],
            cwd=HERE,
            env={**os.environ, "CELERY_PEER_REDIS": redis_url},
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        self.process.terminate()  # a warm shutdown; it has no task left by then
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class User:
    """The benchmark's user: sends tasks and waits for their results with Celery's client."""

    def __init__(self, worker_pid: int, redis_pid: int) -> None:
        import tasks  # the app reads $CELERY_PEER_REDIS when imported

        self.tasks = tasks
        self.app = tasks.app
        self.pids = {"server": redis_pid, "runtime": worker_pid}

    def wait_for_worker(self) -> None:
        deadline = time.monotonic() + 60
        while not self.app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise TimeoutError("the Celery worker did not answer a ping within 60 s")

    def chain(self) -> dict[str, float]:
        """(A): wall time per hop, and the gaps between consecutive tasks' start times."""
        from celery import chain

        hop = self.tasks.hop
        walls: list[float] = []
        gaps: list[float] = []
        for _ in range(CHAIN_RUNS):
            started = time.perf_counter()
            result = chain(hop.s("0"), *(hop.s() for _ in range(CHAIN_LENGTH - 1))).apply_async()
            result.get(timeout=300)
            walls.append((time.perf_counter() - started) * 1000 / CHAIN_LENGTH)
            at: list[float] = []
            node = result
            while node is not None:
                at.append(float(node.get(timeout=60)["at"]))
                node = node.parent
            if len(at) != CHAIN_LENGTH:
                raise RuntimeError(f"the chain ran {len(at)} tasks, expected {CHAIN_LENGTH}")
            at.reverse()
            gaps += [(at[i] - at[i - 1]) * 1000 for i in range(1, CHAIN_LENGTH)]
        gaps.sort()
        return {
            "hop_wall_ms": statistics.median(walls),
            "hop_p50_ms": statistics.median(gaps),
            "hop_p99_ms": gaps[max(0, round(len(gaps) * 0.99) - 1)],
        }

    def independent(self) -> float:
        """(B): tasks/s from the first `delay()` to the last result received."""
        from celery.result import ResultSet

        started = time.perf_counter()
        results = ResultSet([self.tasks.hop.delay("1") for _ in range(INDEPENDENT)])
        results.get(timeout=600)
        return INDEPENDENT / (time.perf_counter() - started)

    def bulk(self) -> float:
        """(B bulk): tasks/s from sending one `group` of them all to the last result received."""
        from celery import group

        started = time.perf_counter()
        group(self.tasks.hop.s("1") for _ in range(INDEPENDENT)).apply_async().get(timeout=600)
        return INDEPENDENT / (time.perf_counter() - started)

    def drain(self) -> dict[str, float]:
        """Tasks/s of tasks queued while the worker consumed nothing, from the instant it is told to
        consume again to the last result, and the CPU that the worker and redis-server spent per task."""
        from celery.result import ResultSet

        if not self.app.control.cancel_consumer(QUEUE, reply=True, limit=1):
            raise RuntimeError("the worker did not confirm that it stopped consuming")
        results = ResultSet([self.tasks.hop.delay("1") for _ in range(INDEPENDENT)])
        cpu = {"server": cpu_seconds(self.pids["server"]), "runtime": tree_cpu_seconds(self.pids["runtime"])}
        released = time.perf_counter()
        self.app.control.add_consumer(QUEUE, reply=False)
        results.get(timeout=600)
        figures = {"drain_states_per_s": INDEPENDENT / (time.perf_counter() - released)}
        spent = {
            "server": cpu_seconds(self.pids["server"]) - cpu["server"],
            "runtime": tree_cpu_seconds(self.pids["runtime"]) - cpu["runtime"],
        }
        for name, seconds in spent.items():
            figures[f"drain_{name}_cpu_ms_per_state"] = seconds * 1000 / INDEPENDENT
        return figures

    def fan_out(self) -> float:
        """(C): milliseconds from `apply_async` to the `gather` callback's result, median of FAN_RUNS."""
        from celery import chain

        times = []
        for _ in range(FAN_RUNS):
            started = time.perf_counter()
            joined = chain(self.tasks.hop.s("0"), self.tasks.fan.s(FAN_WIDTH)).apply_async().get(timeout=300)
            times.append((time.perf_counter() - started) * 1000)
            if joined != {"x": str(FAN_WIDTH)}:
                raise RuntimeError(f"the fan-out ended with {joined!r}")
        return statistics.median(times)


def measure(configuration: str, redis: Redis, workdir: Path) -> dict[str, Any]:
    """One worker configuration against a flushed Redis: its figures, with the load after it."""
    import redis as redis_client

    with redis_client.Redis(port=redis.port) as client:
        client.flushall()
    worker = Worker(configuration, redis.url, workdir / f"worker-{configuration}-{time.monotonic_ns()}.log")
    try:
        user = User(worker.process.pid, redis.process.pid)
        user.wait_for_worker()
        figures: dict[str, Any] = user.chain()
        figures["rss_start_mb"] = tree_rss_mb(worker.process.pid)
        figures["states_per_s"] = user.independent()
        figures["bulk_states_per_s"] = user.bulk()
        figures |= user.drain()
        figures["rss_end_mb"] = tree_rss_mb(worker.process.pid)
        figures["fan_out_ms"] = user.fan_out()
    finally:
        worker.stop()
    return {"backend": "redis", "runtime": f"celery-{configuration}", **figures, "load_after": list(os.getloadavg())}


def versions() -> dict[str, str]:
    from importlib.metadata import version

    server = subprocess.run(["redis-server", "--version"], check=True, capture_output=True, text=True).stdout
    return {
        "celery": version("celery"),
        "kombu": version("kombu"),
        "redis-py": version("redis"),
        "redis-server": server.split("v=")[1].split()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="tuned,default", help=f"comma-separated, of {', '.join(WORKERS)}")
    parser.add_argument("--rounds", type=int, default=1, help="how many times to run every configuration")
    parser.add_argument("--results-dir", type=Path, default=HERE.parent.parent / "results")
    args = parser.parse_args()
    configurations = args.workers.split(",")
    if unknown := set(configurations) - set(WORKERS):
        parser.error(f"unknown worker configuration(s) {', '.join(sorted(unknown))}: choose from {', '.join(WORKERS)}")
    # Stopped with SIGTERM, still stop the redis-server and worker this started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    record: dict[str, Any] = {
        "peer": "celery",
        **commit_and_dirty(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["bench/peers/celery/bench.py", *sys.argv[1:]]),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions(),
        "workers": {name: ["celery", "-A", "tasks", "worker", *WORKERS[name]] for name in configurations},
        "load_before": list(os.getloadavg()),
        "sizes": {
            "chain": CHAIN_LENGTH,
            "chain_runs": CHAIN_RUNS,
            "independent": INDEPENDENT,
            "fan_width": FAN_WIDTH,
            "fan_runs": FAN_RUNS,
        },
        "results": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        redis = Redis(Path(tmp))
        try:
            redis.wait_ready()
            os.environ["CELERY_PEER_REDIS"] = redis.url
            for round_number in range(1, args.rounds + 1):
                for configuration in configurations:
                    result = {"round": round_number, **measure(configuration, redis, Path(tmp))}
                    record["results"].append(result)
                    print(progress_line(round_number, result), flush=True)
        finally:
            redis.stop()
    record["load_after"] = list(os.getloadavg())
    path = write_record(record, args.results_dir, "celery")
    print("\n" + "\n".join(table_lines(record)))
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
