"""Reach into a test server's database directly: to plant rows that older versions could write."""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
from typing import Any


def execute(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement (`?` placeholders on SQLite, `$1` on PostgreSQL) and return its rows."""
    if database_url.startswith("sqlite:///"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30) as conn:
            return list(conn.execute(sql, params).fetchall())
    import asyncpg

    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(database_url)
        try:
            return [tuple(row) for row in await conn.fetch(sql, *params)]
        finally:
            await conn.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:  # callers may be inside an event loop
        return pool.submit(asyncio.run, run()).result()


def placeholder(database_url: str, index: int) -> str:
    return "?" if database_url.startswith("sqlite") else f"${index}"
