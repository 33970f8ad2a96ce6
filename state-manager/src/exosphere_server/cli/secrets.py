"""`exosphere secrets rotate-key`: re-encrypt every graph secret under a new secrets key.

Where the key lives decides where the new one goes:

* the embedded default (`secrets.key` beside the SQLite file, no `SECRETS_ENCRYPTION_KEY`): the file is
  replaced. The new key is first written to `secrets.key.new` (mode 0600), then the database is
  re-encrypted in one transaction, then the file is renamed over `secrets.key`: a crash in between
  leaves the new key on disk, never a database no key file opens.
* `SECRETS_ENCRYPTION_KEY` (always with PostgreSQL): the new key is printed on stdout, once; set it on
  every replica and restart them.

Servers still running with the old key cannot read secrets until they restart (docs/deployment.md).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from pathlib import Path
from typing import NoReturn

import typer

from exosphere_server.config import ConfigError, Settings, load_settings

app = typer.Typer(help="Graph secrets at rest: rotate the key they are encrypted with.", no_args_is_help=True)


@app.command("rotate-key")
def rotate_key(
    database_url: str | None = typer.Option(
        None, "--database-url", help="sqlite:///PATH or postgresql://USER:PW@HOST/DB (default: SQLite in the data dir)"
    ),
) -> None:
    """Re-encrypt every graph secret with a new, random key, and say where that key is."""
    try:
        settings = load_settings(database_url=database_url)
    except ConfigError as exc:
        _fail(str(exc))
    new_key = secrets.token_bytes(32)
    key_file = _embedded_key_file(settings)
    pending = key_file.with_name(key_file.name + ".new") if key_file else None
    if pending is not None:
        _write_private(pending, new_key)
    from exosphere_server.engine.secrets_key import SecretsKeyMismatch

    try:
        graphs = asyncio.run(_rotate(settings, new_key))
    except SecretsKeyMismatch as exc:
        if pending is not None:
            pending.unlink()
        _fail(str(exc))
    if key_file is not None and pending is not None:
        os.replace(pending, key_file)
        typer.echo(f"Re-encrypted the secrets of {graphs} graph(s); the new key is in {key_file}.", err=True)
        typer.echo("Restart the server: until then it cannot read secrets.", err=True)
        return
    typer.echo(_encoded(new_key))
    typer.echo(
        f"Re-encrypted the secrets of {graphs} graph(s) with the key printed above. Set it as "
        "SECRETS_ENCRYPTION_KEY on every replica and restart them: until then they cannot read secrets.",
        err=True,
    )


async def _rotate(settings: Settings, new_key: bytes) -> int:
    from exosphere_server.engine.secret_box import SecretBox
    from exosphere_server.engine.secrets_key import rotate_secrets_key
    from exosphere_server.storage import open_storage

    storage = open_storage(settings.database_url, pool_size=1)
    await storage.start()
    try:
        return await rotate_secrets_key(storage, SecretBox(settings.secrets_key), SecretBox(new_key))
    finally:
        await storage.close()


def _embedded_key_file(settings: Settings) -> Path | None:
    """The key file of the embedded default, or None when the key comes from SECRETS_ENCRYPTION_KEY."""
    if os.environ.get("SECRETS_ENCRYPTION_KEY") or not settings.is_sqlite:
        return None
    key_file = Path(settings.database_url.removeprefix("sqlite:///")).parent / "secrets.key"
    if not key_file.exists():
        _fail(f"no secrets key to rotate: {key_file} does not exist (the server makes it at its first start)")
    return key_file


def _write_private(path: Path, key: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(_encoded(key) + "\n")


def _encoded(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def _fail(message: str) -> NoReturn:
    typer.echo(f"exosphere secrets rotate-key: {message}", err=True)
    raise typer.Exit(2)
