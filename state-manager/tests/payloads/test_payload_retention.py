"""Payloads go with their runs, on a real SQLite file and a real PostgreSQL: retention deletes a finished
run's payloads with it, the sweep removes the payload files a crash left without a run, and
`exosphere backup` copies the payload files beside the SQLite copy."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from exosphere_server.clock import now_ms
from exosphere_server.engine import runs, transitions
from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.secret_box import SecretBox
from exosphere_server.storage import open_storage, schema
from exosphere_server.storage.payloads import FilePayloadStore
from exosphere_testing import TEST_SECRETS_KEY, ServerProcess, sqlite_url

from tests.blackbox.helpers import claim_all, node, register, trigger, upsert
from tests.conftest import database_url

from ..engine.echo_graph import add_echo_graph

BIG = "payload " * 20_000  # 160 KB: over the 64 KiB default threshold


@pytest.fixture
async def ctx(backend: str, tmp_path: Path) -> AsyncIterator[EngineContext]:
    storage = open_storage(database_url(backend, tmp_path))
    await storage.start()
    context = EngineContext(storage=storage, box=SecretBox(b"k" * 32))
    await add_echo_graph(context, x="small")
    try:
        yield context
    finally:
        await storage.close()


async def _stored_payloads(ctx: EngineContext, run_id: str) -> set[str]:
    """The keys of the payloads kept for a run: its files (SQLite) or its rows (PostgreSQL)."""
    store = ctx.storage.payload_store
    if isinstance(store, FilePayloadStore):
        directory = store.root / run_id
        return {p.name for p in directory.iterdir()} if directory.exists() else set()
    async with ctx.storage.reader() as tx:
        p = schema.payloads
        return {row[0] for row in await tx.conn.execute(sa.select(p.c.key).where(p.c.run_id == run_id))}


async def test_retention_deletes_a_finished_runs_payloads_and_keeps_a_live_runs(ctx: EngineContext) -> None:
    done = (await runs.trigger(ctx, "ns", "g", runs.RunRequest(inputs={"x": BIG}))).run_id
    [state] = await transitions.claim(ctx, "ns", ["Echo"], 1)
    assert state.inputs == {"x": BIG}
    await transitions.executed(ctx, "ns", state.id, [{"x": BIG + "out"}], state.lease_id)
    live = (await runs.trigger(ctx, "ns", "g", runs.RunRequest(inputs={"x": BIG}))).run_id
    big_key = hashlib.sha256(BIG.encode()).hexdigest()
    assert await _stored_payloads(ctx, done) == {big_key, hashlib.sha256((BIG + "out").encode()).hexdigest()}
    assert await _stored_payloads(ctx, live) == {big_key}  # the same text, kept per run

    assert await runs.delete_finished_runs(ctx, now_ms() + 1000, limit=100) == 1
    assert await _stored_payloads(ctx, done) == set()
    assert await _stored_payloads(ctx, live) == {big_key}
    [still] = await transitions.claim(ctx, "ns", ["Echo"], 1)
    assert still.run_id == live and still.inputs == {"x": BIG}


async def test_the_sweep_removes_old_payload_files_of_runs_that_do_not_exist(ctx: EngineContext) -> None:
    store = ctx.storage.payload_store
    if not isinstance(store, FilePayloadStore):
        pytest.skip("PostgreSQL writes payload rows in the transaction of their run: none is ever left over")
    kept = (await runs.trigger(ctx, "ns", "g", runs.RunRequest(inputs={"x": BIG}))).run_id
    hour_ago = time.time() - 2 * 3600
    os.utime(store.root / kept, (hour_ago, hour_ago))
    for name, when in (("crashed-old", hour_ago), ("in-flight", time.time())):
        (store.root / name).mkdir()
        (store.root / name / "deadbeef").write_text("left by a crash")
        os.utime(store.root / name, (when, when))

    assert await runs.sweep_orphan_payloads(ctx, now_ms()) == 1
    assert sorted(p.name for p in store.root.iterdir()) == sorted([kept, "in-flight"])


def test_a_backup_copies_the_payload_files_and_the_copy_restores_them_whole(tmp_path: Path) -> None:
    live = tmp_path / "live"
    server = ServerProcess(sqlite_url(live), env={"SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY}).start()
    try:
        with httpx.Client(
            base_url=f"{server.url}/v0/namespace/ops", headers={"x-api-key": server.api_key}, timeout=30
        ) as api:
            register(api, {"Take": (("x",), ("y",))})
            upsert(api, "take", [node("take", "Take", "ops", {"x": "1"})])
            trigger(api, "take", inputs={"x": BIG})
        backup = tmp_path / "backups" / "exosphere.db"
        backup.parent.mkdir()
        command = [sys.executable, "-m", "exospherehost.cli", "backup", str(backup), "--database-url", sqlite_url(live)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        server.stop()

    # Restored as docs/deployment.md says: the database and its payloads folder side by side.
    restored = tmp_path / "restored"
    restored.mkdir(mode=0o700)
    shutil.copyfile(backup, restored / "exosphere.db")
    shutil.copytree(backup.with_name("exosphere.db-payloads"), restored / "exosphere.db-payloads")
    server = ServerProcess(sqlite_url(restored), env={"SECRETS_ENCRYPTION_KEY": TEST_SECRETS_KEY}).start()
    try:
        with httpx.Client(
            base_url=f"{server.url}/v0/namespace/ops", headers={"x-api-key": server.api_key}, timeout=30
        ) as api:
            [state] = claim_all(api, "Take", count=1)
            assert state["inputs"] == {"x": BIG}
    finally:
        server.stop()
