"""Two replicas on one PostgreSQL: runtimes talk to either, unites fire once, killing a replica loses nothing."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from exosphere_testing import ServerProcess, wait_until

from .test_crash import _graph, _states


def test_two_replicas_share_one_database_and_survive_losing_one(
    backend: str,
    make_server: Callable[..., ServerProcess],
    namespace: str,
    runtimes: Callable[..., subprocess.Popen[bytes]],
) -> None:
    if backend != "postgres":
        pytest.skip("replicas share a PostgreSQL database; an SQLite file belongs to one server")
    first = make_server()
    second = make_server(first.database_url)
    api = httpx.Client(base_url=f"{second.url}/v0/namespace/{namespace}", headers={"x-api-key": second.api_key})
    runtimes(first, namespace)
    runtimes(second, namespace)
    wait_until(lambda: api.get("/nodes/").json()["count"] == 4)
    _graph(api, namespace)
    width = 60
    run_id = api.post("/graph/crash/trigger", json={"store": {"width": str(width)}}).json()["run_id"]
    wait_until(lambda: sum(s["identifier"] == "work" and s["status"] == "SUCCESS" for s in _states(api, run_id)) >= 5)
    first.kill()  # one replica dies mid-run; its runtime retries until it is back
    time.sleep(1)
    first.start()
    run = api.get(f"/run/{run_id}", params={"wait_ms": 60_000}, timeout=70).json()
    assert run["finished"] and run["status"] == "SUCCESS", run
    states = _states(api, run_id)
    work = Counter(s["inputs"]["item"] for s in states if s["identifier"] == "work" and s["status"] == "SUCCESS")
    assert work == Counter({str(i): 1 for i in range(width)})
    assert [s["status"] for s in states if s["identifier"] == "merge"] == ["SUCCESS"]  # one unite across replicas
