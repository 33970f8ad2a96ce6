"""Run a real `exosphere server` process from tests and benchmarks, and kill it like a crash would.

Example::

    with ServerProcess(sqlite_url(tmp_path)) as server:
        httpx.get(server.url + "/health")
        server.kill()      # SIGKILL, no goodbye
        server.start()     # same database, same port
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

TEST_API_KEY = "exosphere-test-key"
TEST_SECRETS_KEY = base64.urlsafe_b64encode(b"0123456789abcdef0123456789abcdef").decode()


# Debian's Chromium, driven headless by Playwright (never a browser download); these flags keep it
# from reaching for the network, which these machines do not have.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def ensure_chromium() -> Path:
    """Debian's chromium package, installed now if missing (needs root, as on the project's machines)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError("Chromium is missing: install Debian's `chromium` package (apt-get install -y chromium)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True, env=env)
    return CHROMIUM


def wait_until(check: Callable[[], object], timeout_s: float = 60, what: str = "the condition") -> None:
    """Poll ``check`` until it returns something true; fail the test after ``timeout_s``.

    The bound only stops a broken test on a loaded machine; it is not what is tested, so it is generous.

    Example::

        wait_until(lambda: api.get("/nodes/").json()["count"] == 4, what="the runtime to register")
    """
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'exosphere.db'}"


# (admin URL, database) made by `fresh_postgres_url` in this process, dropped at its exit.
_made_databases: list[tuple[str, str]] = []


def fresh_postgres_url(admin_url: str) -> str:
    """Create an empty database on the cluster of `admin_url` and return its URL.

    The database is dropped when this process exits, so a cluster kept running between test runs does
    not pile up thousands of them; not when `EXOSPHERE_TEST_POSTGRES_THROWAWAY` is set
    (scripts/with-postgres.sh: the cluster goes as a whole, and a drop costs a checkpoint).
    """
    import asyncpg

    name = "exo_" + uuid.uuid4().hex[:16]

    async def create() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    # A thread of its own: callers may already be inside an event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()
    if not os.environ.get("EXOSPHERE_TEST_POSTGRES_THROWAWAY"):
        if not _made_databases:
            atexit.register(_drop_made_databases)
        _made_databases.append((admin_url, name))
    return admin_url.rsplit("/", 1)[0] + "/" + name


def _drop_made_databases() -> None:
    import asyncpg

    async def drop(admin_url: str, names: list[str]) -> None:
        try:
            conn = await asyncpg.connect(admin_url, timeout=10)
        except (OSError, asyncpg.PostgresError):
            return  # the cluster is gone already: nothing to tidy
        try:
            for name in names:
                # FORCE: a server a test left running must not keep its database.
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except asyncpg.PostgresError:
            pass  # tidying only: what is left goes with the cluster (scripts/postgres.sh)
        finally:
            await conn.close()

    by_cluster: dict[str, list[str]] = {}
    for admin_url, name in _made_databases:
        by_cluster.setdefault(admin_url, []).append(name)
    for admin_url, names in by_cluster.items():
        asyncio.run(drop(admin_url, names))


class ServerProcess:
    """An `exosphere server` subprocess on a free loopback port (`database_url=None`: the server's default)."""

    def __init__(
        self,
        database_url: str | None,
        *,
        port: int | None = None,
        api_key: str = TEST_API_KEY,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
        log_level: str = "WARNING",
    ) -> None:
        self.database_url = database_url
        self.port = port or free_port()
        self.api_key = api_key
        self.extra_env = env or {}
        self.log_path = log_path
        self.log_level = log_level
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ServerProcess:
        env = {
            **os.environ,
            "STATE_MANAGER_SECRET": self.api_key,
            "SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY,
            **self.extra_env,
        }
        command = [
            sys.executable,
            "-m",
            "exosphere_server",
            "server",
            "--port",
            str(self.port),
            *(["--database-url", self.database_url] if self.database_url is not None else []),
            "--log-level",
            self.log_level,
        ]
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(command, env=env, stdout=output, stderr=output, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"exosphere server exited with {self.process.returncode} (log: {self.log_path})")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"exosphere server did not answer /health within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to finish anything, as in a crash."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()
