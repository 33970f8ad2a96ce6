"""`exosphere backup` copies a running server's SQLite database consistently, the copy restores, and
`exosphere secrets rotate-key` re-encrypts every secret so that only the new key reads them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from exosphere_testing import TEST_SECRETS_KEY, ServerProcess, fresh_postgres_url, sqlite_url

from ..blackbox.helpers import claim_all, node, register, trigger, upsert

SECRET = "s3cret-value"
EMBEDDED_KEY = {"SECRETS_ENCRYPTION_KEY": ""}  # the key file beside the SQLite database, as by default


def exosphere(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "exospherehost.cli", *args]
    return subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120)


def _client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=f"{server.url}/v0/namespace/ops", headers={"x-api-key": server.api_key}, timeout=30)


def _graph_with_a_secret(api: httpx.Client) -> None:
    register(api, {"Sec": ((), ("y",))}, secrets={"Sec": ["api_token"]})
    upsert(api, "sec", [node("sec", "Sec", "ops")], secrets={"api_token": SECRET})


def _secret_read_by_a_runtime(api: httpx.Client) -> str:
    trigger(api, "sec")
    [state] = claim_all(api, "Sec", count=1)
    answer = api.get(f"/state/{state['state_id']}/secrets")
    assert answer.status_code == 200, answer.text
    return str(answer.json()["secrets"]["api_token"])


def _run_count(api: httpx.Client) -> int:
    return int(api.get("/runs/1/1").json()["total"])


def test_a_backup_taken_under_writes_restores_with_its_secrets_and_rotation_changes_the_key(tmp_path: Path) -> None:
    live = tmp_path / "live"
    server = ServerProcess(sqlite_url(live), env=EMBEDDED_KEY).start()
    try:
        with _client(server) as api:
            _graph_with_a_secret(api)
            stop = threading.Event()

            def keep_writing() -> None:
                with _client(server) as writer:
                    while not stop.is_set():
                        trigger(writer, "sec")

            writer = threading.Thread(target=keep_writing)
            writer.start()
            try:
                backup = tmp_path / "backups" / "exosphere.db"
                backup.parent.mkdir()
                done = exosphere("backup", str(backup), "--database-url", sqlite_url(live), env=EMBEDDED_KEY)
            finally:
                stop.set()
                writer.join()
            assert done.returncode == 0, done.stderr
            written = _run_count(api)
    finally:
        server.stop()
    assert oct(backup.stat().st_mode & 0o777) == "0o600"
    assert not list(backup.parent.glob("*.partial"))

    # Restore as docs/deployment.md says: the file and its key, side by side, into an empty data folder.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copyfile(backup, restored / "exosphere.db")
    shutil.copyfile(backup.with_name("exosphere.db.secrets.key"), restored / "secrets.key")
    again = ServerProcess(sqlite_url(restored), env=EMBEDDED_KEY)
    with again, _client(again) as api:
        assert 0 < _run_count(api) <= written  # one committed state from while the writes went on
        assert _secret_read_by_a_runtime(api) == SECRET

    old_key = (restored / "secrets.key").read_text()
    rotated = exosphere("secrets", "rotate-key", "--database-url", sqlite_url(restored), env=EMBEDDED_KEY)
    assert rotated.returncode == 0, rotated.stderr
    assert "Re-encrypted the secrets of 1 graph(s)" in rotated.stderr and rotated.stdout == ""
    assert (restored / "secrets.key").read_text() != old_key and not (restored / "secrets.key.new").exists()
    with again, _client(again) as api:
        assert _secret_read_by_a_runtime(api) == SECRET
    with pytest.raises(RuntimeError):  # the old key no longer opens this database
        ServerProcess(sqlite_url(restored), env={"SECRETS_ENCRYPTION_KEY": old_key.strip()}).start()


def test_backup_of_postgresql_says_to_use_pg_dump() -> None:
    done = exosphere("backup", "x.db", "--database-url", "postgresql://u@127.0.0.1:9/db",
                     env={"SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY})  # fmt: skip
    assert done.returncode == 2
    assert "back it up with pg_dump" in done.stderr


def test_rotating_a_key_given_in_the_environment_prints_the_new_one(tmp_path: Path) -> None:
    admin = os.environ.get("EXOSPHERE_TEST_POSTGRES_URL")
    url = fresh_postgres_url(admin) if admin else sqlite_url(tmp_path)
    with ServerProcess(url) as server, _client(server) as api:  # started with SECRETS_ENCRYPTION_KEY
        _graph_with_a_secret(api)
    rotated = exosphere(
        "secrets", "rotate-key", "--database-url", url, env={"SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY}
    )
    assert rotated.returncode == 0, rotated.stderr
    new_key = rotated.stdout.strip()
    assert new_key and new_key != TEST_SECRETS_KEY and "SECRETS_ENCRYPTION_KEY on every replica" in rotated.stderr
    with ServerProcess(url, env={"SECRETS_ENCRYPTION_KEY": new_key}) as server, _client(server) as api:
        assert _secret_read_by_a_runtime(api) == SECRET
    with pytest.raises(RuntimeError):
        ServerProcess(url).start()  # the old key is refused
    wrong = exosphere("secrets", "rotate-key", "--database-url", url, env={"SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY})
    assert wrong.returncode == 2 and "is not the key this database's graph secrets were encrypted with" in wrong.stderr
