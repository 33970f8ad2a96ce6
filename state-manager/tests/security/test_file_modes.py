"""The embedded database is owner-only: its directory (when the server creates it) 0700, the database
file, its WAL and shared-memory files and the generated secrets key 0600. A directory that already
exists keeps its mode (it may be shared on purpose), but the database file in it is tightened."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
from exosphere_testing import ServerProcess, sqlite_url


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_something(server: ServerProcess) -> None:
    body = {"runtime_name": "r", "nodes": [{"name": "A", "inputs_schema": {}, "outputs_schema": {}, "secrets": []}]}
    response = httpx.put(server.url + "/v0/namespace/modes/nodes/", json=body, headers={"x-api-key": server.api_key})
    assert response.status_code == 200, response.text


def test_the_default_data_dir_and_its_files_are_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "home" / ".exosphere"
    env = {"EXOSPHERE_DATA_DIR": str(data_dir), "EXOSPHERE_DATABASE_URL": "", "SECRETS_ENCRYPTION_KEY": ""}
    with ServerProcess(None, env=env) as server:
        write_something(server)
        files = [data_dir / name for name in ("exosphere.db", "exosphere.db-wal", "exosphere.db-shm", "secrets.key")]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert mode(data_dir) == 0o700


def test_a_database_in_an_existing_shared_directory_is_tightened(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    database = shared / "exosphere.db"
    database.touch()
    database.chmod(0o644)  # as created by earlier versions
    with ServerProcess(sqlite_url(shared)) as server:
        write_something(server)
        assert mode(database) == 0o600
        assert mode(shared / "exosphere.db-wal") == 0o600
    assert mode(shared) == 0o755
