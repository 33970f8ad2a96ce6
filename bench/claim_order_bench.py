"""Does a claim cost more with a million finished states, now that claims order by priority? (issue 12)

    .venv/bin/python bench/claim_order_bench.py [--finished 1000000] [--ready 2000] [--claims 200]
        [--postgres ADMIN_URL]

Fills a fresh database (through the migrations) with `--finished` SUCCESS states and `--ready` CREATED
ones of two nodes with priorities from -5 to 5, then times `--claims` claims of one state each, for
one node and for both, through the storage layer (`Storage.claim`, the statement every claim and
eager dispatch runs). Prints the median and p90 in milliseconds, for an empty history and for the
full one, and checks that each claim took the state first in the claim order.

SQLite always; PostgreSQL too with `--postgres` (or EXOSPHERE_BENCH_POSTGRES_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from exosphere_server.storage import open_storage
from exosphere_server.storage.base import Storage, claim_order
from exosphere_testing import fresh_postgres_url, sqlite_url

NS = "bench"
COLUMNS = (
    "id, namespace, node_name, identifier, graph_name, run_id, status, inputs, outputs, data, parents, carried, "
    "does_unites, enqueue_after, retry_count, fanout_id, manual_retry_fanout_id, lease_expired, claims, "
    "created_at, updated_at, priority"
)


def fill_sql(first: int, count: int, status: str, dialect: str) -> str:
    """INSERT ... SELECT of `count` states numbered from `first` (ids, runs and times from the number)."""
    series = (
        f"SELECT g FROM generate_series({first}, {first + count - 1}) g"
        if dialect == "postgresql"
        else f"WITH RECURSIVE s(g) AS (SELECT {first} UNION ALL SELECT g + 1 FROM s WHERE g < {first + count - 1}) "
        "SELECT g FROM s"
    )
    hex_id = "lpad(to_hex(g), 24, '0')" if dialect == "postgresql" else "printf('%024x', g)"
    node = "CASE WHEN g % 2 = 0 THEN 'x' ELSE 'y' END"
    return (
        f"INSERT INTO states ({COLUMNS}) SELECT {hex_id}, '{NS}', {node}, 'i', 'g', 'r' || g, '{status}', "
        f"'{{}}', '{{}}', '{{}}', '{{}}', '{{}}', false, g, 0, 'f' || g, '', false, 0, g, g, (g % 11) - 5 "
        f"FROM ({series}) AS numbers"
    )


async def measure(storage: Storage, nodes: list[str], claims: int) -> list[float]:
    times = []
    for _ in range(claims):
        start = time.perf_counter()
        [state] = await storage.claim(NS, nodes, 1, "lease", 60_000)
        times.append((time.perf_counter() - start) * 1000)
        assert state.status == "QUEUED"
    return times


async def first_in_order(storage: Storage, nodes: list[str]) -> bool:
    """Whether a claim takes the ready state that comes first in the claim order."""
    async with storage.reader() as tx:
        row = (
            await tx.conn.execute(
                sa.text(
                    "SELECT id, enqueue_after, priority FROM states WHERE status = 'CREATED' AND node_name IN "
                    f"({', '.join(repr(n) for n in nodes)}) ORDER BY enqueue_after - priority * 1000, id LIMIT 1"
                )
            )
        ).one()
    [state] = await storage.claim(NS, nodes, 1, "lease", 60_000)
    return state.id == row.id and claim_order(state) == row.enqueue_after - row.priority * 1000


async def bench(url: str, finished: int, ready: int, claims: int) -> dict[str, list[float]]:
    storage = open_storage(url)
    await storage.start()
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    results: dict[str, list[float]] = {}
    try:
        for history in (0, finished):
            async with storage.transaction() as tx:
                await tx.conn.execute(sa.text("DELETE FROM states"))
                if history:
                    await tx.conn.execute(sa.text(fill_sql(1, history, "SUCCESS", dialect)))
                await tx.conn.execute(sa.text(fill_sql(history + 1, ready, "CREATED", dialect)))
            if dialect == "postgresql":  # as autovacuum would; the server never runs ANALYZE on SQLite
                async with storage.transaction() as tx:
                    await tx.conn.execute(sa.text("ANALYZE states"))
            assert await first_in_order(storage, ["x"]) and await first_in_order(storage, ["x", "y"])
            results[f"1 node, {history:,} finished"] = await measure(storage, ["x"], claims)
            results[f"2 nodes, {history:,} finished"] = await measure(storage, ["x", "y"], claims)
    finally:
        await storage.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--ready", type=int, default=2000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("EXOSPHERE_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        backends = {"SQLite": sqlite_url(Path(directory))}
        if args.postgres:
            backends["PostgreSQL"] = fresh_postgres_url(args.postgres)
        for name, url in backends.items():
            for label, times in asyncio.run(bench(url, args.finished, args.ready, args.claims)).items():
                p90 = statistics.quantiles(times, n=10)[-1]
                print(f"{name:10} claim, {label:27} p50 {statistics.median(times):6.2f} ms  p90 {p90:6.2f} ms")


if __name__ == "__main__":
    main()
