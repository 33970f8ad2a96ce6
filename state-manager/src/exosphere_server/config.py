"""Every setting of the state manager, read once from the environment and the command line.

| variable | default | meaning |
|---|---|---|
| `EXOSPHERE_DATABASE_URL` | `sqlite:///<data dir>/exosphere.db` | `sqlite:///path` or `postgresql://user:pw@host/db` |
| `EXOSPHERE_DATA_DIR` | `~/.exosphere` | where the embedded database and generated key live |
| `STATE_MANAGER_SECRET` | none | the API key clients send in `x-api-key` |
| `EXOSPHERE_METRICS_KEY` | none | a second key accepted by `/metrics` only (`x-api-key` or `Authorization: Bearer`) |
| `EXOSPHERE_ALLOWED_HOSTS` | from `--host`, see `allowed_hosts_for` | comma-separated `Host` names served (`*`: any) |
| `EXOSPHERE_AUTH_MAX_FAILURES` | `20` | wrong keys from one client address within the window before it is locked out |
| `EXOSPHERE_AUTH_FAILURE_WINDOW_SECONDS` | `60` | the window in which failures are counted |
| `EXOSPHERE_AUTH_LOCKOUT_SECONDS` | `60` | how long a locked-out address gets `429`, from its latest wrong key |
| `SECRETS_ENCRYPTION_KEY` | made once beside the SQLite file | base64 of 32 bytes (AES-256-GCM), checked at start |
| `SECRETS_ENCRYPTION_KEY_PREVIOUS` | none | old keys, comma-separated: a start re-encrypts secrets to the current key |
| `EXOSPHERE_MAX_REQUEST_BYTES` | max payload + 1 MiB (51 MiB) | larger request bodies get 413, unread |
| `EXOSPHERE_PAYLOAD_INLINE_BYTES` | `65536` (64 KiB) | longer input/output values are kept apart from the state rows |
| `EXOSPHERE_MAX_PAYLOAD_BYTES` | `52428800` (50 MiB) | a longer input/output value gets 413 |
| `EXOSPHERE_PAYLOAD_STORE` | none: beside the database | `s3://BUCKET/PREFIX`: large payloads in S3 (`[s3]` extra) |
| `EXOSPHERE_S3_ENDPOINT_URL` | none: AWS | the S3-compatible server to use instead (MinIO, Ceph...) |
| `EXOSPHERE_MAX_LIVE_VIEWS_PER_CLIENT` | `64` | run event streams (dashboard, `/v0`) one client address may hold open |
| `EXOSPHERE_DEFAULT_LEASE_SECONDS` | `300` | lease of a claim whose request names none (the published client) |
| `EXOSPHERE_CRON_CATCH_UP` | `latest` | `latest`: after downtime fire the latest missed occurrence once; `none`: skip |
| `EXOSPHERE_IDEMPOTENCY_KEY_HOURS` | `24` | how long a trigger's `idempotency_key` keeps naming its run |
| `EXOSPHERE_UNSERVED_NODE_SECONDS` | `60` | wait before a run says `no runtime serves node X` (unasked node) |
| `EXOSPHERE_RUN_RETENTION_DAYS` | `0` (keep) | finished runs older than this are deleted |
| `EXOSPHERE_DB_POOL_SIZE` | `10` | PostgreSQL connections per replica |
| `EXOSPHERE_MAX_GRAPH_NODES` | `10000` | most nodes a graph template may have; larger upserts get a 422 |
| `CORS_ORIGINS` | none | comma-separated origins allowed to call `/v0` and `/metrics` (never `/dashboard`) |
| `OTEL_EXPORTER_OTLP_ENDPOINT` | none | export traces there, OTLP http/protobuf (`exosphere-server[otel]`) |
"""

from __future__ import annotations

import base64
import importlib.util
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from exosphere_server.private_files import make_private_dir
from exosphere_server.storage.payloads import parse_s3_url

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# The names a browser puts in the Host header for a loopback server (IPv6 addresses in brackets).
LOOPBACK_HOST_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY_HOST = "*"


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
    idempotency_key_ms: int = 24 * 3_600_000
    db_pool_size: int = 10
    max_graph_nodes: int = 10_000
    cors_origins: tuple[str, ...] = ()
    metrics_key: str | None = None
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOST_NAMES
    auth_max_failures: int = 20
    auth_failure_window_s: int = 60
    auth_lockout_s: int = 60
    previous_secrets_keys: tuple[bytes, ...] = ()
    # The embedded default's key file when it was missing and a key was made: written only once the
    # database is known to hold no secrets under another key (engine/secrets_key.py).
    new_secrets_key_file: Path | None = None
    max_request_bytes: int = 51 * 1024 * 1024
    payload_inline_bytes: int = 64 * 1024
    max_payload_bytes: int = 50 * 1024 * 1024
    payload_store: str = ""  # `s3://BUCKET/PREFIX`, or empty: beside the database (storage/payloads.py)
    s3_endpoint_url: str | None = None
    max_live_views_per_client: int = 64
    unserved_after_ms: int = 60_000
    tracing: bool = False  # an OTLP endpoint is configured: export traces (tracing.py)

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


def _key_beside(database_file: Path) -> tuple[bytes, Path | None]:
    """The embedded default's key, kept owner-only next to the database; a new one if there is none
    yet, with the file to write it to once the database agrees (see `Settings.new_secrets_key_file`)."""
    key_file = database_file.parent / "secrets.key"
    if key_file.exists():
        return decode_secrets_key(key_file.read_text().strip()), None
    return secrets.token_bytes(32), key_file


def write_new_key_file(settings: Settings) -> None:
    key_file = settings.new_secrets_key_file
    if key_file is None or key_file.exists():
        return
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.urlsafe_b64encode(settings.secrets_key).decode() + "\n")


def _int_env(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _list_env(name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


def allowed_hosts_for(listen_host: str, configured: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The Host header values the server answers, against DNS rebinding: a page on an attacker's domain
    that resolves to this server sends that domain as Host, and is refused.

    >>> allowed_hosts_for("127.0.0.1")
    ('localhost', '127.0.0.1', '[::1]')
    >>> allowed_hosts_for("10.0.0.5")
    ('10.0.0.5', 'localhost', '127.0.0.1', '[::1]')
    """
    if configured:
        return configured
    if listen_host in LOOPBACK_HOSTS:
        return LOOPBACK_HOST_NAMES
    if listen_host in ("0.0.0.0", "::"):
        # Reachable under any name, and then an API key is required, so the name proves nothing.
        return (ANY_HOST,)
    return (f"[{listen_host}]" if ":" in listen_host else listen_host, *LOOPBACK_HOST_NAMES)


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
    new_key_file: Path | None = None
    if raw_secrets_key:
        secrets_key = decode_secrets_key(raw_secrets_key)
    elif url.startswith("sqlite:///"):
        database_file = Path(url.removeprefix("sqlite:///"))
        make_private_dir(database_file.parent)
        secrets_key, new_key_file = _key_beside(database_file)
    else:
        raise ConfigError("SECRETS_ENCRYPTION_KEY is required with PostgreSQL (URL-safe base64 of 32 bytes)")

    catch_up = os.environ.get("EXOSPHERE_CRON_CATCH_UP", "latest")
    if catch_up not in {"latest", "none"}:
        raise ConfigError("EXOSPHERE_CRON_CATCH_UP must be 'latest' or 'none'")
    max_graph_nodes = _int_env("EXOSPHERE_MAX_GRAPH_NODES", 10_000)
    if max_graph_nodes < 1:
        raise ConfigError(f"EXOSPHERE_MAX_GRAPH_NODES must be at least 1, got {max_graph_nodes}")
    max_payload_bytes = _int_env("EXOSPHERE_MAX_PAYLOAD_BYTES", 50 * 1024 * 1024, minimum=1)
    payload_store = _payload_store()
    return Settings(
        database_url=url,
        api_key=key,
        secrets_key=secrets_key,
        host=host,
        port=port,
        default_lease_ms=_int_env("EXOSPHERE_DEFAULT_LEASE_SECONDS", 300) * 1000,
        cron_catch_up=catch_up,
        run_retention_days=_int_env("EXOSPHERE_RUN_RETENTION_DAYS", 0),
        idempotency_key_ms=_int_env("EXOSPHERE_IDEMPOTENCY_KEY_HOURS", 24, minimum=1) * 3_600_000,
        db_pool_size=_int_env("EXOSPHERE_DB_POOL_SIZE", 10),
        max_graph_nodes=max_graph_nodes,
        cors_origins=_list_env("CORS_ORIGINS"),
        metrics_key=os.environ.get("EXOSPHERE_METRICS_KEY") or None,
        allowed_hosts=allowed_hosts_for(host, _list_env("EXOSPHERE_ALLOWED_HOSTS")),
        auth_max_failures=_int_env("EXOSPHERE_AUTH_MAX_FAILURES", 20, minimum=1),
        auth_failure_window_s=_int_env("EXOSPHERE_AUTH_FAILURE_WINDOW_SECONDS", 60, minimum=1),
        auth_lockout_s=_int_env("EXOSPHERE_AUTH_LOCKOUT_SECONDS", 60, minimum=1),
        previous_secrets_keys=tuple(decode_secrets_key(k) for k in _list_env("SECRETS_ENCRYPTION_KEY_PREVIOUS")),
        new_secrets_key_file=new_key_file,
        # A body holds one payload at the most plus its JSON around it: the payload limit is the one that speaks.
        max_request_bytes=_int_env("EXOSPHERE_MAX_REQUEST_BYTES", max_payload_bytes + 1024 * 1024),
        payload_inline_bytes=_int_env("EXOSPHERE_PAYLOAD_INLINE_BYTES", 64 * 1024, minimum=0),
        max_payload_bytes=max_payload_bytes,
        payload_store=payload_store,
        s3_endpoint_url=os.environ.get("EXOSPHERE_S3_ENDPOINT_URL") or None,
        max_live_views_per_client=_int_env("EXOSPHERE_MAX_LIVE_VIEWS_PER_CLIENT", 64, minimum=1),
        unserved_after_ms=_int_env("EXOSPHERE_UNSERVED_NODE_SECONDS", 60, minimum=1) * 1000,
        tracing=_tracing_configured(),
    )


def _payload_store() -> str:
    url = os.environ.get("EXOSPHERE_PAYLOAD_STORE", "").strip()
    if not url:
        return ""
    try:
        parse_s3_url(url)
    except ValueError as exc:
        raise ConfigError(f"EXOSPHERE_PAYLOAD_STORE: {exc}") from exc
    if not _found("boto3"):
        raise ConfigError(
            "EXOSPHERE_PAYLOAD_STORE names S3 but boto3 is not installed: pip install 'exosphere-server[s3]'"
        )
    return url


OTEL_PACKAGES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")


def _tracing_configured() -> bool:
    """Traces are exported when an OTLP endpoint is set (the standard variables), unless switched off."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    switched_off = os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true"
    if not endpoint or switched_off or os.environ.get("OTEL_TRACES_EXPORTER", "").lower() == "none":
        return False
    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol not in (None, "", "http/protobuf"):
        raise ConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL {protocol!r} is not supported: use http/protobuf (port 4318)")
    if not all(_found(name) for name in OTEL_PACKAGES):
        raise ConfigError(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'exosphere-server[otel]' (or unset the variable)"
        )
    return True


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
