"""Protocol-level helpers: register string-only nodes, upsert graphs, claim and report like a runtime would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from exosphere_server.storage.migrate import MIGRATIONS
from sqlalchemy.ext.asyncio import create_async_engine


def string_schema(*fields: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {f: {"type": "string", "title": f} for f in fields},
        "required": list(fields),
    }


def register(
    api: httpx.Client,
    nodes: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
    secrets: dict[str, list[str]] | None = None,
) -> None:
    """`nodes` maps a node name to (input fields, output fields)."""
    body = {
        "runtime_name": "test-runtime",
        "nodes": [
            {
                "name": name,
                "inputs_schema": string_schema(*ins),
                "outputs_schema": string_schema(*outs),
                "secrets": (secrets or {}).get(name, []),
            }
            for name, (ins, outs) in nodes.items()
        ],
    }
    response = api.put("/nodes/", json=body)
    assert response.status_code == 200, response.text


def node(
    identifier: str,
    node_name: str,
    namespace: str,
    inputs: dict[str, str] | None = None,
    next_nodes: list[str] | None = None,
    unites: str | None = None,
    strategy: str = "ALL_SUCCESS",
) -> dict[str, Any]:
    return {
        "node_name": node_name,
        "namespace": namespace,
        "identifier": identifier,
        "inputs": inputs or {},
        "next_nodes": next_nodes or [],
        "unites": {"identifier": unites, "strategy": strategy} if unites else None,
    }


def upsert(api: httpx.Client, graph: str, nodes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    response = api.put(f"/graph/{graph}", json={"secrets": {}, "nodes": nodes, **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def trigger(api: httpx.Client, graph: str, **body: Any) -> str:
    response = api.post(f"/graph/{graph}/trigger", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["run_id"])


def claim(api: httpx.Client, *nodes: str, batch_size: int = 50, wait_ms: int = 0, **extra: Any) -> list[dict[str, Any]]:
    response = api.post(
        "/states/enqueue", json={"nodes": list(nodes), "batch_size": batch_size, "wait_ms": wait_ms, **extra}
    )
    assert response.status_code == 200, response.text
    states: list[dict[str, Any]] = response.json()["states"]
    return states


def claim_all(api: httpx.Client, *nodes: str, count: int, timeout_s: float = 20) -> list[dict[str, Any]]:
    """Claim until `count` states were handed out (long-polling), or fail."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += claim(api, *nodes, batch_size=min(count - len(got), 1000), wait_ms=1000)
    assert len(got) == count, f"claimed {len(got)} of {count} states of {nodes}"
    return got


def executed(api: httpx.Client, state: dict[str, Any], *outputs: dict[str, str]) -> httpx.Response:
    return api.post(
        f"/state/{state['state_id']}/executed", json={"outputs": list(outputs), "lease_id": state.get("lease_id")}
    )


def errored(api: httpx.Client, state: dict[str, Any], error: str = "boom") -> httpx.Response:
    return api.post(f"/state/{state['state_id']}/errored", json={"error": error, "lease_id": state.get("lease_id")})


def run(api: httpx.Client, run_id: str, wait_ms: int = 0) -> dict[str, Any]:
    response = api.get(f"/run/{run_id}", params={"wait_ms": wait_ms})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def states(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/run/{run_id}/states")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["states"]
    return found


def by_identifier(found: list[dict[str, Any]], identifier: str) -> list[dict[str, Any]]:
    return [s for s in found if s["identifier"] == identifier]


def on_database(url: str, work: Callable[[sa.Connection], Any]) -> Any:
    """Run `work` on a connection to the server's database, in one committed transaction (either backend)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url)
        try:
            with engine.begin() as conn:
                return work(conn)
        finally:
            engine.dispose()

    async def on_postgres() -> Any:
        engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        try:
            async with engine.begin() as conn:
                return await conn.run_sync(work)
        finally:
            await engine.dispose()

    return asyncio.run(on_postgres())


def counts_match_states(api: httpx.Client, database_url: str, run_id: str) -> None:
    """The run's kept counts and version (`GET .../progress`), and its states' kept descendant counts,
    equal what its states say, counted here in SQL."""

    def count(conn: sa.Connection) -> tuple[int, dict[tuple[str, str], int]]:
        rows = conn.execute(
            sa.text(
                "SELECT identifier, status, COUNT(*), SUM(revision) FROM states WHERE run_id = :r "
                "GROUP BY identifier, status"
            ),
            {"r": run_id},
        ).all()
        return sum(int(r[3]) for r in rows), {(r[0], r[1]): int(r[2]) for r in rows}

    def below(conn: sa.Connection) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """Descendants per (ancestor, status): counted from the rows (a state is not counted under its
        `uncounted_parent`), and as kept in `descendant_counts`."""
        run_states = "SELECT id FROM states WHERE run_id = :r"
        counted = conn.execute(
            sa.text(
                "SELECT a.ancestor_id, s.status, COUNT(*) FROM state_ancestors a JOIN states s ON s.id = a.state_id "
                f"WHERE a.ancestor_id IN ({run_states}) "
                "AND (s.uncounted_parent IS NULL OR s.uncounted_parent <> a.ancestor_id) "
                "GROUP BY a.ancestor_id, s.status"
            ),
            {"r": run_id},
        ).all()
        kept = conn.execute(
            sa.text(
                "SELECT ancestor_id, status, SUM(states) FROM descendant_counts "
                f"WHERE ancestor_id IN ({run_states}) GROUP BY ancestor_id, status"
            ),
            {"r": run_id},
        ).all()
        return {(r[0], r[1]): int(r[2]) for r in counted}, {(r[0], r[1]): int(r[2]) for r in kept if r[2]}

    counted_below, kept_below = on_database(database_url, below)
    assert kept_below == counted_below
    version, expected = on_database(database_url, count)
    response = api.get(f"/run/{run_id}/progress")
    assert response.status_code == 200, response.text
    progress = response.json()
    kept = {(n["identifier"], status): c for n in progress["nodes"] for status, c in n["counts"].items()}
    assert kept == expected
    assert progress["version"] == version
    assert progress["total_count"] == sum(expected.values())


def downgrade_to(conn: sa.Connection, revision: str) -> None:
    """Take the database on `conn` back to migration `revision` (as an operator on an older release was)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    command.downgrade(config, revision)
