"""`exosphere backup DEST`: a consistent copy of the embedded SQLite database, taken while the server runs.

SQLite's online backup API copies the database page by page and starts again whenever a write lands
in the middle, so the copy is one committed state of the database, with the server serving throughout
(a copy of the file with `cp` may catch half a transaction, and misses what is still in the WAL). The
secrets key file of the embedded default is copied beside it (`DEST.secrets.key`): without it, the
backup's graph secrets could not be read. Large payloads, kept as files beside the database
(`<database>-payloads/`), are copied after it, beside the copy (`DEST-payloads/`): every payload
the copied database references was written before the copy began. PostgreSQL is backed up with
`pg_dump` (docs/deployment.md); an S3 payload store has its own versioning or replication.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import NoReturn

import typer

from exosphere_server.config import ConfigError, load_settings

# Pages copied per step: between steps the server's writers get the database (a step holds a read lock).
PAGES_PER_STEP = 1024


def backup(
    destination: Path = typer.Argument(..., help="File to write the copy to (replaced if it exists)"),
    database_url: str | None = typer.Option(
        None, "--database-url", help="sqlite:///PATH (default: SQLite in the data dir)"
    ),
) -> None:
    """Copy the SQLite database consistently while the server runs (PostgreSQL: use pg_dump)."""
    try:
        settings = load_settings(database_url=database_url)
    except ConfigError as exc:
        _fail(str(exc))
    if not settings.is_sqlite:
        _fail("this database is PostgreSQL: back it up with pg_dump (docs/deployment.md, 'Backups')")
    source = Path(settings.database_url.removeprefix("sqlite:///"))
    if not source.exists():
        _fail(f"no database at {source}")
    destination = destination.resolve()
    copy_sqlite(source, destination)
    typer.echo(f"Backed up {source} to {destination}", err=True)
    payloads = source.with_name(source.name + "-payloads")
    if payloads.is_dir():
        payloads_copy = destination.with_name(destination.name + "-payloads")
        copy_payloads(payloads, payloads_copy)
        typer.echo(f"and its large payloads to {payloads_copy} (restore them beside the database)", err=True)
    key_file = source.parent / "secrets.key"
    if not os.environ.get("SECRETS_ENCRYPTION_KEY") and key_file.exists():
        key_copy = destination.with_name(destination.name + ".secrets.key")
        shutil.copyfile(key_file, key_copy)
        os.chmod(key_copy, 0o600)
        typer.echo(f"and its secrets key to {key_copy} (restore it as secrets.key beside the database)", err=True)


def copy_sqlite(source: Path, destination: Path) -> None:
    """One committed state of `source` into `destination` (mode 0600), checked before it replaces anything.

    Example::

        copy_sqlite(Path("~/.exosphere/exosphere.db").expanduser(), Path("/backups/exosphere.db"))
    """
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # private from the first byte
    reader = sqlite3.connect(source)  # read only by use; mode=ro cannot open a WAL database alone
    writer = sqlite3.connect(partial)
    try:
        reader.backup(writer, pages=PAGES_PER_STEP)
        # A standalone file: the copy carries no WAL of its own.
        writer.execute("PRAGMA journal_mode=DELETE")
        [(verdict,)] = writer.execute("PRAGMA integrity_check").fetchall()
    finally:
        writer.close()
        reader.close()
    if verdict != "ok":
        partial.unlink()
        _fail(f"the copy failed its integrity check ({verdict}); nothing was replaced")
    os.replace(partial, destination)


def copy_payloads(source: Path, destination: Path) -> None:
    """The payload files (`<run id>/<sha256>`) into a fresh `destination`, owner-only; a crash's
    temporary files are left out. Files are immutable once written, so a copy is never torn."""
    partial = destination.with_name(destination.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns(".*.tmp"))
    os.chmod(partial, 0o700)
    shutil.rmtree(destination, ignore_errors=True)
    os.replace(partial, destination)


def _fail(message: str) -> NoReturn:
    typer.echo(f"exosphere backup: {message}", err=True)
    raise typer.Exit(2)
