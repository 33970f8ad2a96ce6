"""Every setting of the state manager, read once from the environment and the command line.

| variable | default | meaning |
|---|---|---|
| `EXOSPHERE_DATABASE_URL` | `sqlite:///<data dir>/exosphere.db` | `sqlite:///path` or `postgresql://user:pw@host/db` |
| `EXOSPHERE_DATA_DIR` | `~/.exosphere` | where the embedded database and generated key live |
| `STATE_MANAGER_SECRET` | none | the API key clients send in `x-api-key` |
| `SECRETS_ENCRYPTION_KEY` | generated once beside the SQLite file | URL-safe base64 of 32 bytes (AES-256-GCM) |
| `EXOSPHERE_DEFAULT_LEASE_SECONDS` | `300` | lease of a claim whose request names none (the published client) |
| `EXOSPHERE_CRON_CATCH_UP` | `latest` | `latest`: after downtime fire the latest missed occurrence once; `none`: skip |
| `EXOSPHERE_RUN_RETENTION_DAYS` | `0` (keep) | finished runs older than this are deleted |
| `EXOSPHERE_DB_POOL_SIZE` | `10` | PostgreSQL connections per replica |
| `CORS_ORIGINS` | localhost:3000/3001 | comma-separated allowed origins |
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from exosphere_server.private_files import make_private_dir

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_CORS_ORIGINS = (
    "http://localhost:3000",
    "http://localhost:3001",
    "http://127.0.0.1:3000",
    "http://127.0.0.1:3001",
)


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    api_key: str | None
    secrets_key: bytes
    host: str = "127.0.0.1"
    port: int = 8000
    default_lease_ms: int = 300_000
    cron_catch_up: str = "latest"
    run_retention_days: int = 0
    db_pool_size: int = 10
    cors_origins: tuple[str, ...] = field(default=DEFAULT_CORS_ORIGINS)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def decode_secrets_key(value: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(value.encode())
    except (ValueError, TypeError) as exc:
        raise ConfigError("SECRETS_ENCRYPTION_KEY must be URL-safe base64 of 32 bytes") from exc
    if len(key) != 32:
        raise ConfigError(f"SECRETS_ENCRYPTION_KEY must decode to 32 bytes, got {len(key)}")
    return key


def _generated_key_beside(database_file: Path) -> bytes:
    """On the embedded default the key is made once and kept, owner-only, next to the database."""
    key_file = database_file.parent / "secrets.key"
    if key_file.exists():
        return decode_secrets_key(key_file.read_text().strip())
    value = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return decode_secrets_key(value)


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def load_settings(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    database_url: str | None = None,
    api_key: str | None = None,
) -> Settings:
    """Build the settings from explicit values, then the environment, then defaults."""
    data_dir = Path(os.environ.get("EXOSPHERE_DATA_DIR") or Path.home() / ".exosphere")
    url = database_url or os.environ.get("EXOSPHERE_DATABASE_URL") or f"sqlite:///{data_dir / 'exosphere.db'}"
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(f"Unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB")
    key = api_key or os.environ.get("STATE_MANAGER_SECRET") or None
    if host not in LOOPBACK_HOSTS and not key:
        raise ConfigError(
            f"Refusing to listen on {host} without an API key: set STATE_MANAGER_SECRET or pass --api-key"
        )

    raw_secrets_key = os.environ.get("SECRETS_ENCRYPTION_KEY")
    if raw_secrets_key:
        secrets_key = decode_secrets_key(raw_secrets_key)
    elif url.startswith("sqlite:///"):
        database_file = Path(url.removeprefix("sqlite:///"))
        make_private_dir(database_file.parent)
        secrets_key = _generated_key_beside(database_file)
    else:
        raise ConfigError("SECRETS_ENCRYPTION_KEY is required with PostgreSQL (URL-safe base64 of 32 bytes)")

    catch_up = os.environ.get("EXOSPHERE_CRON_CATCH_UP", "latest")
    if catch_up not in {"latest", "none"}:
        raise ConfigError("EXOSPHERE_CRON_CATCH_UP must be 'latest' or 'none'")
    cors = tuple(o.strip() for o in os.environ.get("CORS_ORIGINS", "").split(",") if o.strip())
    return Settings(
        database_url=url,
        api_key=key,
        secrets_key=secrets_key,
        host=host,
        port=port,
        default_lease_ms=_int_env("EXOSPHERE_DEFAULT_LEASE_SECONDS", 300) * 1000,
        cron_catch_up=catch_up,
        run_retention_days=_int_env("EXOSPHERE_RUN_RETENTION_DAYS", 0),
        db_pool_size=_int_env("EXOSPHERE_DB_POOL_SIZE", 10),
        cors_origins=cors or DEFAULT_CORS_ORIGINS,
    )
