"""An in-memory stand-in for the runtime endpoints of the state manager, with fault injection."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from fake_server import Reply, Request


@dataclass
class FakeState:
    state_id: str
    node_name: str
    inputs: dict[str, str]
    lease_id: str | None = None


@dataclass
class FakeStateManager:
    """Hands out states (with leases and long-poll unless disabled) and records what runtimes report.

    ``faults[endpoint]`` holds replies served before the real handling, e.g.
    ``faults["executed"] = [Reply(503), Reply(drop=True)]``.
    """

    leases: bool = True
    long_poll: bool = True
    secrets: dict[str, str] = field(default_factory=dict)
    ready: list[FakeState] = field(default_factory=list)
    held: dict[str, FakeState] = field(default_factory=dict)
    results: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    heartbeats: list[str] = field(default_factory=list)
    lost: set[str] = field(default_factory=set)
    registrations: list[Any] = field(default_factory=list)
    claims: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, list[Reply]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def add_state(self, node_name: str, inputs: dict[str, str] | None = None) -> str:
        state_id = f"s{next(self._ids)}"
        self.ready.append(FakeState(state_id, node_name, inputs or {}))
        return state_id

    async def handle(self, request: Request) -> Reply:
        parts = request.path.rstrip("/").split("/")
        endpoint = parts[-1]
        if self.faults.get(endpoint):
            return self.faults[endpoint].pop(0)
        if endpoint == "nodes":
            self.registrations.append(request.body)
            return Reply(200, {"runtime_name": request.body["runtime_name"], "registered_nodes": []})
        if endpoint == "enqueue":
            return await self._enqueue(request.body)
        if parts[-2] == "states" and endpoint == "executed":
            return self._report_many(request.body["results"])
        state_id = parts[-2]
        if endpoint == "secrets":
            return Reply(200, {"secrets": self.secrets})
        return self._report(endpoint, state_id, request.body or {})

    async def _enqueue(self, body: dict[str, Any]) -> Reply:
        self.claims.append(body)
        deadline = time.monotonic() + (body.get("wait_ms", 0) / 1000 if self.long_poll else 0)
        while not self._claimable(body) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        taken = [state for state in self.ready if state.node_name in body["nodes"]][: body["batch_size"]]
        items = []
        for state in taken:
            self.ready.remove(state)
            state.lease_id = f"lease-{state.state_id}-{time.monotonic_ns()}" if self.leases else None
            self.held[state.state_id] = state
            item: dict[str, Any] = {
                "state_id": state.state_id,
                "node_name": state.node_name,
                "identifier": state.node_name.lower(),
                "inputs": state.inputs,
                "created_at": "2025-09-04T10:15:31.004000",
            }
            if self.leases:  # a server that predates leases sends neither
                item["lease_id"] = state.lease_id
                item["lease_expires_at"] = int(time.time() * 1000) + body.get("lease_ms", 300_000)
            items.append(item)
        return Reply(200, {"count": len(items), "namespace": "ns", "status": "QUEUED", "states": items})

    def _claimable(self, body: dict[str, Any]) -> bool:
        return any(state.node_name in body["nodes"] for state in self.ready)

    def _report_many(self, items: list[dict[str, Any]]) -> Reply:
        answers = []
        for item in items:
            reply = self._report("executed", item["state_id"], {k: v for k, v in item.items() if k != "state_id"})
            ok = reply.status == 200
            answers.append(
                {"state_id": item["state_id"], "status": "EXECUTED"}
                if ok
                else {"state_id": item["state_id"], "status_code": reply.status, "detail": reply.body["detail"]}
            )
        return Reply(200, {"results": answers})

    def _report(self, endpoint: str, state_id: str, body: dict[str, Any]) -> Reply:
        state = self.held.get(state_id)
        if state is None:
            return Reply(404, {"detail": "State not found"})
        if self.leases and (state_id in self.lost or body.get("lease_id") != state.lease_id):
            return Reply(409, {"detail": f"Lease lost: state {state_id} is not held under this lease"})
        if endpoint == "heartbeat":
            self.heartbeats.append(state_id)
            return Reply(200, {"lease_expires_at": 0})
        del self.held[state_id]
        if endpoint == "release":
            self.released.append(state_id)
            self.ready.append(state)
            return Reply(200, {"status": "CREATED"})
        self.results[state_id] = (endpoint, body)
        return Reply(200, {"status": endpoint.upper()})
