"""Storage: the interface (`base.Storage`, `base.Tx`) and its SQLite and PostgreSQL implementations."""

from __future__ import annotations

from pathlib import Path

from exosphere_server.storage.base import Storage
from exosphere_server.storage.payloads import PayloadLimits


def open_storage(database_url: str, pool_size: int = 10, payload_limits: PayloadLimits | None = None) -> Storage:
    """Pick the implementation from the URL: `sqlite:///path` or `postgresql://...`."""
    storage: Storage
    if database_url.startswith("sqlite:///"):
        from exosphere_server.storage.sqlite import SqliteStorage

        storage = SqliteStorage(Path(database_url.removeprefix("sqlite:///")))
    else:
        from exosphere_server.storage.postgres import PostgresStorage

        storage = PostgresStorage(database_url, pool_size=pool_size)
    storage.payload_limits = payload_limits or PayloadLimits()
    return storage
