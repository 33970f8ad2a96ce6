"""Starting `exosphere server`: refuses unsafe settings with a clear message, keeps its generated key private."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
from exosphere_testing import free_port


def _server(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "exosphere_server", "server", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STATE_MANAGER_SECRET", "SECRETS_ENCRYPTION_KEY")}
    return {**env, "EXOSPHERE_DATA_DIR": str(tmp_path), **extra}


def test_a_public_address_without_an_api_key_is_refused(tmp_path: Path) -> None:
    result = _server(["--host", "0.0.0.0", "--port", str(free_port())], _env(tmp_path))
    assert result.returncode == 2
    assert "without an API key" in result.stderr and "STATE_MANAGER_SECRET" in result.stderr


def test_a_malformed_secrets_key_or_database_url_is_refused(tmp_path: Path) -> None:
    bad_key = _server(["--port", str(free_port())], _env(tmp_path, SECRETS_ENCRYPTION_KEY="short"))
    assert bad_key.returncode == 2 and "SECRETS_ENCRYPTION_KEY" in bad_key.stderr
    bad_url = _server(["--database-url", "mysql://x", "--port", str(free_port())], _env(tmp_path))
    assert bad_url.returncode == 2 and "Unsupported database URL" in bad_url.stderr


def _run_until_healthy(env: dict[str, str]) -> None:
    port = free_port()
    command = [sys.executable, "-m", "exosphere_server", "server", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120  # a bound for a server that never starts, not a speed check
        while time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError("the server did not become healthy")
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_the_embedded_default_generates_one_owner_only_secrets_key(tmp_path: Path) -> None:
    env = _env(tmp_path, STATE_MANAGER_SECRET="k")
    _run_until_healthy(env)
    key_file = tmp_path / "secrets.key"
    first = key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert (tmp_path / "exosphere.db").exists()
    _run_until_healthy(env)  # a second start reuses the key: secrets stored earlier stay readable
    assert key_file.read_text() == first
