"""End-to-end benchmark through the SDK, our runtime and the published `exospherehost==0.0.3`, side by side.

    .venv/bin/python bench/sdk_bench.py [--backend sqlite|postgres|both] [--clients ours,published]

(A) a chain of 20 trivial nodes: per-hop latency (result accepted -> next state claimed), median and p99,
    and the run's wall time / 20; (B) 2,000 independent trivial states released at one instant: states per
    second; (C) one node fanning out to 200, then a `unites` node: end-to-end time. Also the runtime's
    memory (RSS) before and after (B). PostgreSQL needs EXOSPHERE_BENCH_POSTGRES_URL (`make bench` sets it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url

HERE = Path(__file__).parent
REPO = HERE.parent


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, server: ServerProcess, namespace: str) -> None:
        self.api = httpx.Client(base_url=f"{server.url}/v0/namespace/{namespace}",
                                headers={"x-api-key": server.api_key}, timeout=120)
        self.namespace = namespace

    def node(self, ident: str, name: str, inputs: dict[str, str], nxt: list[str] | None = None,
             unites: str | None = None) -> dict[str, Any]:
        return {"node_name": name, "namespace": self.namespace, "identifier": ident, "inputs": inputs,
                "next_nodes": nxt or [], "unites": {"identifier": unites} if unites else None}

    def upsert(self, graph: str, nodes: list[dict[str, Any]]) -> None:
        response = self.api.put(f"/graph/{graph}", json={"secrets": {}, "nodes": nodes})
        response.raise_for_status()

    def run_to_end(self, graph: str, **body: Any) -> tuple[str, float]:
        started = time.perf_counter()
        run_id = self.api.post(f"/graph/{graph}/trigger", json=body).json()["run_id"]
        while not self.api.get(f"/run/{run_id}", params={"wait_ms": 30_000}).json()["finished"]:
            pass
        return run_id, (time.perf_counter() - started) * 1000

    def states(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.api.get(f"/run/{run_id}/states").json()["states"])

    def chain(self, runs: int) -> dict[str, float]:
        hops = 20
        nodes = [self.node(f"h{i}", "Hop", {"x": "0" if i == 0 else f"${{{{ h{i - 1}.outputs.x }}}}"},
                           [f"h{i + 1}"] if i < hops - 1 else []) for i in range(hops)]
        self.upsert("chain", nodes)
        gaps: list[float] = []
        walls: list[float] = []
        for _ in range(runs):
            run_id, wall = self.run_to_end("chain")
            walls.append(wall / hops)
            by_id = {s["identifier"]: s for s in self.states(run_id)}
            gaps += [_ms(by_id[f"h{i}"]["started_at"]) - _ms(by_id[f"h{i - 1}"]["finished_at"]) for i in range(1, hops)]
        gaps.sort()
        return {"hop_median_ms": statistics.median(gaps), "hop_p99_ms": gaps[max(0, int(len(gaps) * 0.99) - 1)],
                "wall_per_hop_ms": statistics.median(walls)}

    def independent(self, count: int) -> float:
        self.upsert("single", [self.node("one", "Hop", {"x": "1"})])
        release_at = time.time() * 1000 + 3000 + count * 4
        run_ids = []
        for _ in range(count):
            delay = max(0, int(release_at - time.time() * 1000))
            run_ids.append(self.api.post("/graph/single/trigger", json={"start_delay": delay}).json()["run_id"])
        finished = []
        for run_id in run_ids:
            while not self.api.get(f"/run/{run_id}", params={"wait_ms": 30_000}).json()["finished"]:
                pass
            finished.append(_ms(self.states(run_id)[0]["finished_at"]))
        return count / ((max(finished) - release_at) / 1000)

    def fan_out(self, runs: int, width: int = 200) -> float:
        self.upsert("fan", [
            self.node("start", "Hop", {"x": "0"}, ["fan"]),
            self.node("fan", "Fan", {"n": str(width)}, ["leaf"]),
            self.node("leaf", "Hop", {"x": "${{ fan.outputs.x }}"}, ["gather"]),
            self.node("gather", "Gather", {"n": str(width)}, unites="start"),
        ])
        return statistics.median(self.run_to_end("fan")[1] for _ in range(runs))


def bench_client(client: str, server: ServerProcess, python: str, quick: bool) -> dict[str, float]:
    namespace = f"bench-{client}"
    env = {**os.environ, "EXOSPHERE_STATE_MANAGER_URI": server.url, "EXOSPHERE_API_KEY": server.api_key,
           "EXOSPHERE_LOG_LEVEL": "ERROR"}
    env.pop("PYTHONPATH", None) if client == "published" else None
    runtime = subprocess.Popen([python, str(HERE / "sdk_runtime.py"), namespace], env=env)
    try:
        bench = Bench(server, namespace)
        deadline = time.monotonic() + 30
        while bench.api.get("/nodes/").json()["count"] < 3:
            assert time.monotonic() < deadline, "runtime did not register"
            time.sleep(0.1)
        figures = bench.chain(runs=2 if quick else 10)
        rss_before = _rss_mb(runtime.pid)
        figures["states_per_s"] = bench.independent(2000)
        figures["rss_before_mb"], figures["rss_after_mb"] = rss_before, _rss_mb(runtime.pid)
        figures["fan_out_ms"] = bench.fan_out(runs=1 if quick else 5)
        return figures
    finally:
        runtime.kill()
        runtime.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--clients", default="ours,published")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    pythons = {"ours": sys.executable}
    if "published" in args.clients:
        pythons["published"] = subprocess.run([str(REPO / "scripts" / "published-client.sh")], check=True,
                                              capture_output=True, text=True).stdout.strip()
    print(f"{'backend':<9} {'client':<10} {'hop p50':>8} {'hop p99':>8} {'wall/hop':>9} {'states/s':>9} "
          f"{'fan 200':>9} {'RSS before/after (B)':>21}")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            for client in args.clients.split(","):
                if backend == "sqlite":
                    url = sqlite_url(Path(tmp) / f"{backend}-{client}")
                else:
                    admin = os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL")
                    if not admin:
                        print("postgres: skipped (set EXOSPHERE_BENCH_POSTGRES_URL or use `make bench`)")
                        break
                    url = fresh_postgres_url(admin)
                (Path(tmp) / f"{backend}-{client}").mkdir(exist_ok=True)
                with ServerProcess(url, log_path=Path(tmp) / f"{backend}-{client}.log") as server:
                    f = bench_client(client, server, pythons[client], quick=client == "published")
                print(f"{backend:<9} {client:<10} {f['hop_median_ms']:6.1f}ms {f['hop_p99_ms']:6.1f}ms "
                      f"{f['wall_per_hop_ms']:7.1f}ms {f['states_per_s']:9.0f} {f['fan_out_ms']:7.0f}ms "
                      f"{f['rss_before_mb']:9.1f}/{f['rss_after_mb']:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
