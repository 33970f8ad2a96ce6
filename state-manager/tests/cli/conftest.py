"""Fixtures of the CLI tests: `exosphere` run as a real subprocess, a real SDK runtime, graph files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from exosphere_testing import ServerProcess

RUNTIME_APP = Path(__file__).parent / "runtime_app.py"
SECRET_VALUE = "hunter2-never-shown"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


Cli = Callable[..., Result]


@pytest.fixture
def cli(server: ServerProcess, namespace: str) -> Cli:
    """`cli("runs", "--json")` runs `exosphere runs --json` against the test server in the test's namespace."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        if "--wait" in args and "--timeout" not in args:
            args = (*args, "--timeout", "60s")  # a stuck run fails the test with the CLI's message, not a hang
        environment = {
            **os.environ,
            "EXOSPHERE_STATE_MANAGER_URI": server.url,
            "EXOSPHERE_API_KEY": server.api_key,
            "EXOSPHERE_NAMESPACE": namespace,
            **(env or {}),
        }
        done = subprocess.run(
            [sys.executable, "-m", "exospherehost.cli", *args],
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def runtime(server: ServerProcess, namespace: str, api: httpx.Client, tmp_path: Path) -> Iterator[None]:
    """The SDK runtime of runtime_app.py, registered before the test starts, stopped (SIGTERM) after it."""
    env = {
        **os.environ,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "EXOSPHERE_NAMESPACE": namespace,
    }
    with open(tmp_path / "runtime.log", "wb") as log:
        process = subprocess.Popen([sys.executable, str(RUNTIME_APP)], env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while api.get("/nodes/").json()["count"] < 4:
            assert process.poll() is None, (tmp_path / "runtime.log").read_text()
            assert time.monotonic() < deadline, "the runtime did not register its nodes"
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fan_graph(name: str = "fan") -> dict[str, Any]:
    """Plan → Split (fan-out) → Work → Merge (unites Plan: runs once, after every branch)."""
    return {
        "name": name,
        "secrets": {"token": SECRET_VALUE},
        "nodes": [
            {
                "node_name": "Plan",
                "identifier": "plan",
                "inputs": {"text": "${{ store.text }}"},
                "next_nodes": ["split"],
            },
            {
                "node_name": "Split",
                "identifier": "split",
                "inputs": {"text": "${{ plan.outputs.text }}"},
                "next_nodes": ["work"],
            },
            {
                "node_name": "Work",
                "identifier": "work",
                "inputs": {"item": "${{ split.outputs.item }}"},
                "next_nodes": ["merge"],
            },
            {
                "node_name": "Merge",
                "identifier": "merge",
                "inputs": {"text": "${{ plan.outputs.text }}"},
                "unites": {"identifier": "plan"},
            },
        ],
        "store_config": {"required_keys": ["text"]},
        "retry_policy": {"max_retries": 0},
    }


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, Any], Path]:
    """Write a graph file: `.json` files as JSON, anything else as YAML (strings are written as they are)."""

    def write(filename: str, content: Any) -> Path:
        path = tmp_path / filename
        if isinstance(content, str):
            path.write_text(content)
        elif path.suffix == ".json":
            path.write_text(json.dumps(content))
        else:
            path.write_text(yaml.safe_dump(content, sort_keys=False))
        return path

    return write


@pytest.fixture
def fan(cli: Cli, write_file: Callable[[str, Any], Path], runtime: None) -> str:
    """The fan graph applied from a YAML file, with its runtime serving."""
    applied = cli("graph", "apply", str(write_file("fan.yaml", fan_graph())))
    assert applied.code == 0, applied
    return "fan"
