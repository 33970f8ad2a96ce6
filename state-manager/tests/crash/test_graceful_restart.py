"""A server stopped with SIGTERM under a busy runtime: a quiet stop and restart, nothing lost (issue 14 §4).

A rolling upgrade stops each replica with SIGTERM. Held long-polls are answered at once, requests in
flight finish, the process exits without a traceback; the runtime sees "server unavailable", waits,
reconnects on its own and delivers every result exactly once.
"""

from __future__ import annotations

import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
from exosphere_testing import ServerProcess, wait_until

from .test_crash import _graph, _states

# What an operator must never meet in either log after a clean stop.
NOISE = ("Traceback", "500 Internal Server Error", '"level": "error"', " ERROR ")


def test_sigterm_under_a_busy_runtime_is_quiet_and_every_state_succeeds_once(
    make_server: Callable[..., ServerProcess],
    namespace: str,
    runtimes: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    server = make_server(log_level="INFO")
    assert server.log_path is not None
    api = httpx.Client(base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key})
    runtime_log = tmp_path / "runtime.log"
    runtimes(server, namespace, log_path=runtime_log)
    wait_until(lambda: api.get("/nodes/").json()["count"] == 4)
    _graph(api, namespace)
    width = 60
    run_id = api.post("/graph/crash/trigger", json={"store": {"width": str(width)}}).json()["run_id"]
    wait_until(lambda: sum(s["identifier"] == "work" and s["status"] == "SUCCESS" for s in _states(api, run_id)) >= 5)

    assert server.process is not None
    process = server.process
    process.send_signal(signal.SIGTERM)  # mid fan-out: claims held, results on their way
    # uvicorn re-raises the signal once it has stopped cleanly, as service managers expect.
    assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    server.process = None
    wait_until(lambda: "server unavailable" in runtime_log.read_text().lower(), what="the runtime to notice")
    server.start()

    run = api.get(f"/run/{run_id}", params={"wait_ms": 60_000}, timeout=70).json()
    assert run["finished"] and run["status"] == "SUCCESS", run
    states = _states(api, run_id)
    assert all(s["status"] == "SUCCESS" for s in states), Counter(str(s["status"]) for s in states)
    work_items = Counter(s["inputs"]["item"] for s in states if s["identifier"] == "work")
    assert work_items == Counter({str(i): 1 for i in range(width)})  # each branch ran and was applied once
    wait_until(lambda: "works again" in runtime_log.read_text(), what="the runtime to reconnect")
    for log in (server.log_path, runtime_log):
        text = log.read_text()
        assert not [word for word in NOISE if word in text], f"{log.name}:\n{text}"
    api.close()
