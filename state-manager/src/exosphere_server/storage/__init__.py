"""Storage: the interface (`base.Storage`, `base.Tx`) and its SQLite and PostgreSQL implementations."""

from __future__ import annotations

from pathlib import Path

from exosphere_server.storage.base import Storage


def open_storage(database_url: str, pool_size: int = 10) -> Storage:
    """Pick the implementation from the URL: `sqlite:///path` or `postgresql://...`."""
    if database_url.startswith("sqlite:///"):
        from exosphere_server.storage.sqlite import SqliteStorage

        return SqliteStorage(Path(database_url.removeprefix("sqlite:///")))
    from exosphere_server.storage.postgres import PostgresStorage

    return PostgresStorage(database_url, pool_size=pool_size)
