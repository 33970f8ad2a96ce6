"""StateManager.watch_run and wait_for_run against a real server: every change, through a cut connection and a
server restart, with no gap and no event older than one already seen."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from exosphere_testing import ServerProcess, sqlite_url
from exospherehost import NotFoundError, RunEvent, StateManager

pytestmark = pytest.mark.asyncio
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


class Wire:
    """What a runtime sends, by hand, so that the test decides when each state moves."""

    def __init__(self, server: ServerProcess, namespace: str) -> None:
        self.namespace = namespace
        self.http = httpx.AsyncClient(
            base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=30
        )

    async def setup(self, fan_out: int = 1) -> str:
        """A graph `split -> work`; `split`'s result fans out to `fan_out` work states."""
        node = {"inputs_schema": SCHEMA, "outputs_schema": SCHEMA, "secrets": []}
        nodes = [{"name": name, **node} for name in ("Split", "Work")]
        (await self.http.put("/nodes/", json={"runtime_name": "wire", "nodes": nodes})).raise_for_status()
        graph = [
            {"node_name": "Split", "namespace": self.namespace, "identifier": "split", "inputs": {"text": "go"}}
            | {"next_nodes": ["work"]},
            {"node_name": "Work", "namespace": self.namespace, "identifier": "work"}
            | {"inputs": {"text": "${{ split.outputs.text }}"}},
        ]
        (await self.http.put("/graph/g", json={"secrets": {}, "nodes": graph})).raise_for_status()
        self.fan_out = fan_out
        response = await self.http.post("/graph/g/trigger", json={})
        response.raise_for_status()
        return str(response.json()["run_id"])

    async def claim(self, node: str, count: int) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        while len(got) < count:
            body = {"nodes": [node], "batch_size": count - len(got), "wait_ms": 5000}
            response = await self.http.post("/states/enqueue", json=body)
            response.raise_for_status()
            got += response.json()["states"]
        return got

    async def done(self, state: dict[str, Any], outputs: int = 1) -> None:
        body = {"outputs": [{"text": str(i)} for i in range(outputs)], "lease_id": state["lease_id"]}
        (await self.http.post(f"/state/{state['state_id']}/executed", json=body)).raise_for_status()

    async def finish(self) -> None:
        """Run the graph to its end: the root, then every fanned-out work state."""
        [root] = await self.claim("Split", 1)
        await self.done(root, outputs=self.fan_out)
        for state in await self.claim("Work", self.fan_out):
            await self.done(state)


class CuttableProxy:
    """A TCP proxy in front of the server whose open connections the test can cut, as a network would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.pipes: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.connections = 0

    async def __aenter__(self) -> CuttableProxy:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()
        self.cut()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def cut(self) -> None:
        for writer in list(self.pipes):
            writer.transport.abort()  # a reset, not a polite close

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.pipes |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await source.read(65536):
                    sink.write(chunk)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.pipes -= {writer, up_writer}


async def take_until(events: AsyncIterator[RunEvent], done: Callable[[RunEvent], bool]) -> list[RunEvent]:
    seen = []
    async for event in events:
        seen.append(event)
        if done(event):
            break
    return seen


def node_counts(event: RunEvent, identifier: str) -> dict[str, int]:
    return next((n.counts for n in event.nodes if n.identifier == identifier), {})


def assert_strictly_newer(events: list[RunEvent]) -> None:
    versions = [e.version for e in events]
    assert versions == sorted(set(versions)), versions


async def test_watch_run_sees_each_change_and_ends_when_the_run_finishes(server: ServerProcess) -> None:
    namespace = "watch-" + uuid.uuid4().hex[:8]
    wire = Wire(server, namespace)
    run_id = await wire.setup(fan_out=3)
    async with StateManager(namespace, state_manager_uri=server.url, key=server.api_key) as sm:
        events = sm.watch_run(run_id)
        seen = await take_until(events, lambda e: True)
        [root] = await wire.claim("Split", 1)
        seen += await take_until(events, lambda e: node_counts(e, "split") == {"QUEUED": 1})
        await wire.done(root, outputs=3)
        seen += await take_until(events, lambda e: node_counts(e, "work") == {"CREATED": 3})
        work = await wire.claim("Work", 3)
        seen += await take_until(events, lambda e: node_counts(e, "work") == {"QUEUED": 3})
        for state in work:
            await wire.done(state)
        seen += [event async for event in events]  # the iteration ends by itself at the finished event
    assert [e.event for e in seen] == ["snapshot"] + ["change"] * (len(seen) - 2) + ["finished"]
    assert_strictly_newer(seen)
    last = seen[-1]
    # each of the 3 branches is a split state and its work state
    assert (last.status, last.finished, last.success_count, last.total_count) == ("SUCCESS", True, 6, 6)
    assert node_counts(last, "work") == {"SUCCESS": 3}


async def test_watch_run_resumes_after_a_cut_connection_without_repeating_or_missing(server: ServerProcess) -> None:
    namespace = "cut-" + uuid.uuid4().hex[:8]
    wire = Wire(server, namespace)
    run_id = await wire.setup(fan_out=2)
    async with (
        CuttableProxy(server.port) as proxy,
        StateManager(namespace, state_manager_uri=proxy.url, key=server.api_key) as sm,
    ):
        events = sm.watch_run(run_id)
        seen = await take_until(events, lambda e: True)
        proxy.cut()
        [root] = await wire.claim("Split", 1)  # changes while the follower is cut off
        await wire.done(root, outputs=2)
        seen += await take_until(events, lambda e: node_counts(e, "work") == {"CREATED": 2})
        proxy.cut()
        for state in await wire.claim("Work", 2):
            await wire.done(state)
        seen += [event async for event in events]
        assert proxy.connections >= 3  # it did reconnect, twice
    assert_strictly_newer(seen)
    assert seen[-1].finished and seen[-1].status == "SUCCESS"


async def test_watch_run_resumes_across_a_server_restart(tmp_path: Path) -> None:
    namespace = "restart-" + uuid.uuid4().hex[:8]
    with ServerProcess(sqlite_url(tmp_path), log_path=tmp_path / "server.log") as server:
        wire = Wire(server, namespace)
        run_id = await wire.setup()
        async with StateManager(namespace, state_manager_uri=server.url, key=server.api_key) as sm:
            events = sm.watch_run(run_id)
            seen = await take_until(events, lambda e: True)
            await asyncio.to_thread(server.stop)
            await asyncio.to_thread(server.start)
            await wire.finish()
            seen += [event async for event in events]
            summary = await sm.wait_for_run(run_id, timeout=60)
    assert_strictly_newer(seen)
    # The run's end is read for the run itself; events of a finished run leave it null.
    assert summary["finished_at"] is not None and summary["duration_ms"] >= 0
    only_read_by_get_run = {
        "cancel_reason": None,
        "warnings": [],
        "child_runs": [],
        "finished_at": summary["finished_at"],
        "duration_ms": summary["duration_ms"],
    }
    assert seen[-1].finished and summary["status"] == "SUCCESS"
    assert summary == {**seen[-1].summary(), **only_read_by_get_run}


async def test_wait_for_run_returns_the_run_summary_and_unknown_runs_are_not_found(server: ServerProcess) -> None:
    namespace = "wait-" + uuid.uuid4().hex[:8]
    wire = Wire(server, namespace)
    run_id = await wire.setup(fan_out=2)
    async with StateManager(namespace, state_manager_uri=server.url, key=server.api_key) as sm:
        waiting = asyncio.create_task(sm.wait_for_run(run_id, timeout=60))
        await wire.finish()
        summary = await waiting
        assert summary == await sm.get_run(run_id)
        assert (summary["status"], summary["finished"], summary["total_count"]) == ("SUCCESS", True, 4)
        with pytest.raises(NotFoundError):
            await sm.wait_for_run("no-such-run", timeout=10)
