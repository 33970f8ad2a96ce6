"""Storage: the interface (`base.Storage`, `base.Tx`) and its SQLite and PostgreSQL implementations."""

from __future__ import annotations

from pathlib import Path

from exosphere_server.storage.base import Storage
from exosphere_server.storage.payloads import PayloadSettings


def open_storage(database_url: str, pool_size: int = 10, payload_settings: PayloadSettings | None = None) -> Storage:
    """Pick the implementation from the URL: `sqlite:///path` or `postgresql://...`."""
    storage: Storage
    if database_url.startswith("sqlite:///"):
        from exosphere_server.storage.sqlite import SqliteStorage

        storage = SqliteStorage(Path(database_url.removeprefix("sqlite:///")))
    else:
        from exosphere_server.storage.postgres import PostgresStorage

        storage = PostgresStorage(database_url, pool_size=pool_size)
    storage.payload_settings = payload_settings or PayloadSettings()
    if storage.payload_settings.store_url:
        from exosphere_server.storage.s3_payloads import S3PayloadStore

        storage.payload_store = S3PayloadStore(
            storage.payload_settings.store_url, endpoint_url=storage.payload_settings.s3_endpoint_url
        )
    return storage
