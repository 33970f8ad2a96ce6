"""Logs a person can read on a terminal, JSON lines for machines, and no Alembic narration at INFO."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from exosphere_testing import TEST_API_KEY, TEST_SECRETS_KEY, ServerProcess, free_port, sqlite_url


def _server_command(database: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "exosphere_server", "server", "--port", str(free_port()),
        "--database-url", sqlite_url(database), *extra,
    ]  # fmt: skip


@pytest.fixture
def terminal_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A server whose stderr is a terminal (a pseudo-terminal), with the default `--log-format auto`."""
    leader, follower = pty.openpty()
    env = {**os.environ, "STATE_MANAGER_SECRET": TEST_API_KEY, "SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY}
    env.pop("EXOSPHERE_LOG_FORMAT", None)
    process = subprocess.Popen(_server_command(tmp_path), stdout=follower, stderr=follower, env=env)
    os.close(follower)
    yield process, leader
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    os.close(leader)


def _read_until(leader: int, marker: str) -> str:
    text = ""
    while marker not in text:
        ready, _, _ = select.select([leader], [], [], 60)
        assert ready, f"no {marker!r} on the terminal; so far:\n{text}"
        text += os.read(leader, 65536).decode(errors="replace")
    return text


def test_on_a_terminal_the_log_is_human_readable(terminal_server: tuple[subprocess.Popen[bytes], int]) -> None:
    _, leader = terminal_server
    text = _read_until(leader, "Application startup complete")
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)  # in colour on a terminal
    [line] = [line for line in plain.splitlines() if "server_started" in line]
    assert re.match(r"\S+Z \[info\s*\] server_started\s+database=sqlite port=\d+", line), line


def test_a_log_file_gets_json_lines_and_one_migration_event_instead_of_alembic_chatter(tmp_path: Path) -> None:
    server = ServerProcess(sqlite_url(tmp_path), log_path=tmp_path / "server.log", log_level="INFO").start()
    server.stop()
    server.start()  # a second start on the same database migrates nothing
    server.stop()
    events = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines() if line.strip()]
    assert not [e for e in events if e.get("logger", "").startswith("alembic")]
    migrated = [e for e in events if e["event"] == "database_migrated"]
    assert len(migrated) == 1 and migrated[0]["from_revision"] is None, migrated
    assert len([e for e in events if e["event"] == "server_started"]) == 2


def test_an_unknown_log_format_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(_server_command(tmp_path, "--log-format", "xml"), capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr == "exosphere server: --log-format must be one of auto, json, console, got 'xml'\n"
