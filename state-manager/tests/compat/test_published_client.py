"""The published `exospherehost==0.0.3` client works against our server unchanged (PROTOCOL §12.6)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from exosphere_testing import ServerProcess

HERE = Path(__file__).parent
REPO = HERE.parents[2]


@pytest.fixture(scope="session")
def published_python() -> str:
    result = subprocess.run(
        [str(REPO / "scripts" / "published-client.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_published_client_runs_fan_out_unites_retries_signals_and_secrets(
    server: ServerProcess, published_python: str
) -> None:
    namespace = "compat-" + uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "COMPAT_NAMESPACE": namespace,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "EXOSPHERE_LOG_LEVEL": "WARNING",
    }
    app = subprocess.Popen(
        [published_python, str(HERE / "published_client_app.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=sys.stderr,
        text=True,
    )
    try:
        assert app.stdout is not None
        line = app.stdout.readline()
        assert line.startswith("RUN "), f"the published client did not start a run: {line!r}"
        run_id = line.split()[1]
        api = httpx.Client(base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key})
        run = api.get(f"/run/{run_id}", params={"wait_ms": 60_000}, timeout=70).json()
        assert run["finished"], run
        states = api.get(f"/run/{run_id}/states").json()["states"]
    finally:
        app.kill()
        app.wait()
    by_node = Counter((s["identifier"], s["status"]) for s in states)
    assert by_node == Counter(
        {
            ("start", "SUCCESS"): 1,  # re-enqueued once, then ran: the same state
            ("split", "SUCCESS"): 3,  # fan-out of three parts
            ("work", "SUCCESS"): 2,
            ("work", "PRUNED"): 1,  # "skip" was pruned
            ("flaky", "RETRY_CREATED"): 2,  # each first attempt failed...
            ("flaky", "SUCCESS"): 2,  # ...and its retry succeeded
            ("merge", "SUCCESS"): 1,  # the unite fired exactly once
        }
    ), by_node
    work_outputs = sorted(s["outputs"]["out"] for s in states if s["identifier"] == "work" and s["status"] == "SUCCESS")
    assert work_outputs == ["A:6", "B:6"]  # the secret reached the node
    [merge] = [s for s in states if s["identifier"] == "merge"]
    assert merge["outputs"] == {"summary": "merged a b skip"}
    assert run["status"] == "SUCCESS"
