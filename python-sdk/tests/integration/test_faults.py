"""Faults with real processes: SIGTERM during a run lets the running node finish and loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from exospherehost import GraphNodeModel, StateManager

HERE = Path(__file__).parent


def test_sigterm_lets_the_running_node_finish_and_its_result_lands(env: str, tmp_path: Path) -> None:
    namespace = "sigterm-" + uuid.uuid4().hex[:8]
    marker = tmp_path / "started"
    command = [sys.executable, str(HERE / "slow_runtime.py"), namespace, str(marker)]
    runtime = subprocess.Popen(command, env=os.environ.copy())
    manager = StateManager(namespace=namespace)
    try:
        node = GraphNodeModel(node_name="Slow", namespace=namespace, identifier="slow", inputs={"text": "x"})
        asyncio.run(manager.upsert_graph("slow", [node], {}))
        run_id = asyncio.run(manager.trigger("slow"))["run_id"]
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, "the node never started"
            time.sleep(0.02)
        runtime.send_signal(signal.SIGTERM)  # mid-execute
        assert runtime.wait(timeout=30) == 0
    finally:
        runtime.kill()

    async def outcome() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        return await manager.wait_for_run(run_id, timeout=10), await manager.get_run_states(run_id)

    run, states = asyncio.run(outcome())
    assert run["status"] == "SUCCESS"
    [state] = states
    assert state["outputs"] == {"text": "X"} and state["attempts"] == 1  # finished by the same runtime, once
