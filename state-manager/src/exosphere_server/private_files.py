"""Owner-only files and directories for the embedded database: it holds graph inputs, outputs and
encrypted secrets, so other users of the machine must not read it (or its WAL, which holds recent
writes in clear).

Example::

    make_private_dir(Path.home() / ".exosphere")   # 0700 if created now; an existing one is left alone
    tighten_database_file(Path.home() / ".exosphere" / "exosphere.db")   # 0600, with -wal and -shm
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import structlog

log = structlog.get_logger("exosphere.files")
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> None:
    """Create `path` owner-only. A directory that already exists keeps its mode: it may be shared on
    purpose (such as /tmp), and the database file is tightened on its own anyway."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
        path.chmod(0o700)  # mkdir's mode passes through the umask; say it exactly


def tighten_database_file(path: Path) -> None:
    """Make the SQLite file 0600 before SQLite opens it: SQLite gives its -wal and -shm files the mode
    of the database file, so they follow. Files made by an older version (0644) are tightened too."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        try:
            if file.exists() and file.stat().st_mode & 0o077:
                file.chmod(0o600)
        except PermissionError as exc:
            # Someone else's file we may still write (group-shared): serve, but tell the operator.
            log.warning("database_file_not_private", path=str(file), error=str(exc))
