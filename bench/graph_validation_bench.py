"""Graph validation benchmark: upsert time of large graphs, and how long `/health` waits meanwhile.

    .venv/bin/python bench/graph_validation_bench.py [--backend sqlite|postgres|both] [--sizes 1000,10000,100000]
                                                     [--graphs 3000]

Prints, per backend: the upsert time of chains (each node reads its predecessor) and wide fan-outs
(one root, every other node below it) of each size, with the longest `/health` answer seen while the
upsert ran; then the time of a node registration with `--graphs` stored graphs, unchanged, changed
for a node no graph uses, and changed for the node every graph uses. PostgreSQL needs
EXOSPHERE_BENCH_POSTGRES_URL (an admin URL; `make bench` starts a local cluster).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from exosphere_testing import ServerProcess, fresh_postgres_url, sqlite_url

NAMESPACE = "bench"
JSON = {"content-type": "application/json"}


def node(identifier: str, inputs: dict[str, str], next_nodes: list[str], name: str = "Step") -> dict[str, Any]:
    return {
        "node_name": name,
        "namespace": NAMESPACE,
        "identifier": identifier,
        "inputs": inputs,
        "next_nodes": next_nodes,
    }


def chain(count: int) -> list[dict[str, Any]]:
    return [
        node(
            f"n{i}",
            {"x": f"${{{{ n{i - 1}.outputs.y }}}}"} if i else {"x": "a"},
            [f"n{i + 1}"] if i < count - 1 else [],
        )
        for i in range(count)
    ]


def wide(count: int) -> list[dict[str, Any]]:
    leaves = [node(f"n{i}", {"x": "${{ root.outputs.y }}"}, []) for i in range(1, count)]
    return [node("root", {"x": "a"}, [leaf["identifier"] for leaf in leaves]), *leaves]


def registration(name: str, inputs: tuple[str, ...]) -> dict[str, Any]:
    properties = {field: {"type": "string"} for field in inputs}
    return {
        "name": name,
        "inputs_schema": {"type": "object", "properties": properties, "required": list(inputs)},
        "outputs_schema": {"type": "object", "properties": {"y": {"type": "string"}}, "required": ["y"]},
        "secrets": [],
    }


def while_probing(server: ServerProcess, action: Callable[[], httpx.Response]) -> tuple[float, float, int]:
    """Run `action` while another thread asks `/health` in a loop: (seconds, longest /health answer, answers)."""
    result: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: result.append(action()))
    latencies: list[float] = []
    with httpx.Client(timeout=600) as probe:
        probe.get(server.url + "/health")  # connection open before the clock starts
        start = time.perf_counter()
        worker.start()
        while worker.is_alive():
            asked = time.perf_counter()
            probe.get(server.url + "/health").raise_for_status()
            latencies.append(time.perf_counter() - asked)
        worker.join()
        elapsed = time.perf_counter() - start
    result[0].raise_for_status()
    return elapsed, max(latencies, default=0.0), len(latencies)


def bench_upserts(server: ServerProcess, api: httpx.Client, sizes: list[int]) -> None:
    print(f"{'graph':<16}{'upsert s':>10}{'max /health ms':>16}{'/health answers':>17}", flush=True)
    for size in sizes:
        for shape, build in (("chain", chain), ("wide", wide)):
            # Encoded up front: encoding it in the upsert thread would hold this process's GIL and
            # show up as /health latency that the server never caused.
            body = json.dumps({"secrets": {}, "nodes": build(size)}).encode()
            graph = f"{shape}-{size}"
            put = functools.partial(api.put, f"/graph/{graph}", content=body, headers=JSON)
            elapsed, worst, answers = while_probing(server, put)
            print(f"{graph:<16}{elapsed:>10.2f}{worst * 1000:>16.1f}{answers:>17}", flush=True)


def bench_registration(server: ServerProcess, api: httpx.Client, graphs: int) -> None:
    nodes = [registration("Load", ("x",)), registration("Work", ("x",)), registration("Spare", ("x",))]
    api.put("/nodes/", json={"runtime_name": "bench", "nodes": nodes}).raise_for_status()
    body = {
        "secrets": {},
        "nodes": [
            node("load", {"x": "a"}, ["work"], "Load"),
            node("work", {"x": "${{ load.outputs.y }}"}, ["last"], "Work"),
            node("last", {"x": "${{ work.outputs.y }}"}, [], "Work"),
        ],
    }
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        for response in pool.map(lambda i: api.put(f"/graph/g{i}", json=body), range(graphs)):
            response.raise_for_status()
    print(f"{graphs} ordinary graphs stored in {time.perf_counter() - started:.1f} s", flush=True)
    cases = [
        ("unchanged schemas", nodes),
        ("changed, node used by no graph", [*nodes[:2], registration("Spare", ("x", "z"))]),
        (f"changed, node used by all {graphs}", [nodes[0], registration("Work", ("x", "w")), nodes[2]]),
    ]
    print(f"{'registration':<36}{'s':>8}{'max /health ms':>16}", flush=True)
    for label, registered in cases:
        put = functools.partial(api.put, "/nodes/", json={"runtime_name": "bench", "nodes": registered})
        elapsed, worst, _ = while_probing(server, put)
        print(f"{label:<36}{elapsed:>8.2f}{worst * 1000:>16.1f}", flush=True)


def run(backend: str, sizes: list[int], graphs: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        if backend == "sqlite":
            url = sqlite_url(Path(directory))
        else:
            admin = os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL")
            if not admin:
                raise SystemExit("EXOSPHERE_BENCH_POSTGRES_URL is not set (an admin URL of a PostgreSQL cluster)")
            url = fresh_postgres_url(admin)
        env = {"EXOSPHERE_MAX_GRAPH_NODES": str(max(sizes))}
        with ServerProcess(url, env=env, log_path=Path(directory) / "server.log") as server:
            headers = {"x-api-key": server.api_key}
            with httpx.Client(base_url=f"{server.url}/v0/namespace/{NAMESPACE}", headers=headers, timeout=600) as api:
                print(f"\n-- {backend}", flush=True)
                bench_upserts(server, api, sizes)
                bench_registration(server, api, graphs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--graphs", type=int, default=3000)
    args = parser.parse_args()
    if args.backend == "both" and not os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL"):
        args.backend = "sqlite"
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    sizes = [int(size) for size in args.sizes.split(",")]
    for backend in backends:
        run(backend, sizes, args.graphs)


if __name__ == "__main__":
    main()
