"""`make demo`: the state manager on embedded SQLite and an example workflow, end to end.

The workflow is `daily_digest.py` (a fan-out and a `unites`); this starts a server for it and says where
to look afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from daily_digest import NAMESPACE, run_daily_digest
from exosphere_testing import ServerProcess, free_port, sqlite_url

DATA = Path(os.environ.get("DEMO_DATA_DIR", Path(__file__).resolve().parent.parent / ".demo"))


async def main(server: ServerProcess) -> None:
    if not await run_daily_digest(server.url, server.api_key):
        raise SystemExit(1)


def where_to_look(server: ServerProcess, keep: bool) -> str:
    url = server.url if keep else "http://127.0.0.1:8000"
    command = f".venv/bin/exosphere server --database-url {sqlite_url(DATA)} --api-key {server.api_key}"
    start = "" if keep else f"  start it again  {command}\n"
    return (
        f"\nWhere to look{' (Ctrl-C stops the server)' if keep else ''}:\n{start}"
        f"  dashboard       {url}/dashboard  (API key {server.api_key})\n"
        f"  command line    .venv/bin/exosphere runs --server {url} --key {server.api_key} --namespace {NAMESPACE}\n"
        f"  API docs        {url}/docs\n"
        f"  metrics         curl -H 'x-api-key: {server.api_key}' {url}/metrics"
    )


if __name__ == "__main__":
    DATA.mkdir(parents=True, exist_ok=True)
    keep = os.environ.get("DEMO_KEEP") == "1"  # `DEMO_KEEP=1 make demo` leaves the server running
    port = int(os.environ.get("DEMO_PORT", free_port()))
    with ServerProcess(sqlite_url(DATA), port=port, log_path=DATA / "server.log") as server:
        print(f"state manager on {server.url} (SQLite file {DATA / 'exosphere.db'}, log {DATA / 'server.log'})")
        asyncio.run(main(server))
        print(where_to_look(server, keep))
        if keep:
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
