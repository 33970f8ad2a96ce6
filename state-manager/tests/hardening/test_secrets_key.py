"""The secrets key is checked against the database at start; rotation re-encrypts; unreadable secrets
fail their state with a clear error instead of an endless retry."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from exosphere_testing import TEST_SECRETS_KEY, ServerProcess

from ..blackbox.helpers import claim_all, node, register, run, states, trigger
from .database import execute, placeholder

OTHER_KEY = base64.urlsafe_b64encode(b"another 32-byte key for the test").decode()


def client(server: ServerProcess, namespace: str) -> httpx.Client:
    return httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=30
    )


def graph_with_a_secret(api: httpx.Client, namespace: str) -> None:
    register(api, {"Use": ((), ("out",))}, secrets={"Use": ["token"]})
    body = {"secrets": {"token": "s3cret"}, "nodes": [node("use", "Use", namespace)]}
    assert api.put("/graph/g", json=body).status_code == 201


def secrets_of_a_claimed_state(api: httpx.Client) -> tuple[str, httpx.Response]:
    run_id = trigger(api, "g")
    [state] = claim_all(api, "Use", count=1)
    return run_id, api.get(f"/state/{state['state_id']}/secrets")


def refused_start(server: ServerProcess) -> str:
    with pytest.raises(RuntimeError, match="exited with 2"):
        server.start()
    assert server.log_path is not None
    return server.log_path.read_text()


def test_a_restart_with_another_key_is_refused_until_the_keys_are_rotated(
    make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    first = make_server()
    with client(first, namespace) as api:
        graph_with_a_secret(api, namespace)
    first.stop()

    changed = ServerProcess(first.database_url, env={"SECRETS_ENCRYPTION_KEY": OTHER_KEY}, log_path=first.log_path)
    log = refused_start(changed)
    assert "SECRETS_ENCRYPTION_KEY is not the key" in log and "SECRETS_ENCRYPTION_KEY_PREVIOUS" in log

    rotating = ServerProcess(
        first.database_url,
        env={"SECRETS_ENCRYPTION_KEY": OTHER_KEY, "SECRETS_ENCRYPTION_KEY_PREVIOUS": TEST_SECRETS_KEY},
        log_path=first.log_path,
    ).start()
    try:
        with client(rotating, namespace) as api:
            _run_id, answer = secrets_of_a_claimed_state(api)
            assert answer.status_code == 200 and answer.json() == {"secrets": {"token": "s3cret"}}
    finally:
        rotating.stop()

    # Rotated for good: the old key alone no longer starts this database, the new one does.
    assert "is not the key" in refused_start(ServerProcess(first.database_url, log_path=first.log_path))
    ServerProcess(first.database_url, env={"SECRETS_ENCRYPTION_KEY": OTHER_KEY}, log_path=first.log_path).start().stop()


def test_a_lost_key_file_is_never_silently_replaced(backend: str, tmp_path: Path, namespace: str) -> None:
    if backend != "sqlite":
        pytest.skip("the key file beside the database is the embedded SQLite default")
    url = f"sqlite:///{tmp_path / 'exosphere.db'}"
    key_file = tmp_path / "secrets.key"
    embedded = {"SECRETS_ENCRYPTION_KEY": ""}
    with ServerProcess(url, env=embedded, log_path=tmp_path / "server.log") as server, client(server, namespace) as api:
        graph_with_a_secret(api, namespace)
    assert key_file.stat().st_mode & 0o777 == 0o600
    key_file.unlink()

    log = refused_start(ServerProcess(url, env=embedded, log_path=tmp_path / "server.log"))
    assert f"secrets key file {key_file} is missing" in log
    assert not key_file.exists()


def test_a_new_database_without_secrets_makes_its_key_file(backend: str, tmp_path: Path) -> None:
    if backend != "sqlite":
        pytest.skip("the key file beside the database is the embedded SQLite default")
    url = f"sqlite:///{tmp_path / 'exosphere.db'}"
    with ServerProcess(url, env={"SECRETS_ENCRYPTION_KEY": ""}, log_path=tmp_path / "server.log"):
        assert (tmp_path / "secrets.key").stat().st_mode & 0o777 == 0o600


def test_a_state_whose_secrets_cannot_be_read_fails_saying_why(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    graph_with_a_secret(api, namespace)
    url = server.database_url
    damaged = '{"token": "bm90IGEgcmVhbCBzZWNyZXQgYXQgYWxsLCBub3QgYXQgYWxs"}'
    execute(
        url,
        f"UPDATE graphs SET secrets = {placeholder(url, 1)} WHERE namespace = {placeholder(url, 2)}",
        damaged,
        namespace,
    )
    run_id, answer = secrets_of_a_claimed_state(api)
    assert answer.status_code == 409, answer.text
    assert "Secrets of graph g cannot be read" in answer.json()["detail"]
    [state] = states(api, run_id)
    assert state["status"] == "ERRORED" and "cannot be read" in state["error"]
    assert run(api, run_id)["status"] == "FAILED"
