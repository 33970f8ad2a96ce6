"""`exosphere run watch`: plain progress lines in a pipe, the run's end, and a server restart survived."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from exosphere_testing import ServerProcess

from .conftest import RUNTIME_APP, Cli, fan_graph

WriteFile = Callable[[str, Any], Path]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PROGRESS = re.compile(r"^run (\S+) (RUNNING|SUCCESS|FAILED) (\d+)/(\d+) states.* (\d+)% elapsed \S+")


def _env(server: ServerProcess, namespace: str) -> dict[str, str]:
    return {
        **os.environ,
        "EXOSPHERE_STATE_MANAGER_URI": server.url,
        "EXOSPHERE_API_KEY": server.api_key,
        "EXOSPHERE_NAMESPACE": namespace,
    }


@pytest.fixture
def start_runtime(server: ServerProcess, namespace: str, tmp_path: Path) -> Iterator[Callable[[], None]]:
    """Start the test runtime when the test says so (not before: the run must wait for it)."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        with open(tmp_path / "runtime.log", "ab") as log:
            started.append(
                subprocess.Popen(
                    [sys.executable, str(RUNTIME_APP)], env=_env(server, namespace), stdout=log, stderr=log
                )
            )

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def test_watch_prints_plain_progress_lines_and_exits_with_the_run_s_outcome(
    cli: Cli, write_file: WriteFile, runtime: None
) -> None:
    assert cli("graph", "apply", str(write_file("fan.yaml", fan_graph()))).code == 0
    run_id = cli("trigger", "fan", "--store", "text=abcdef").stdout.strip()
    watched = cli("run", "watch", run_id)
    assert watched.code == 0, watched
    lines = [PROGRESS.match(line) for line in watched.stdout.splitlines()]
    progress = [m for m in lines if m]
    assert progress and all(m.group(1) == run_id for m in progress)
    last = progress[-1]
    assert last.group(2) == "SUCCESS" and last.group(3) == last.group(4) and last.group(5) == "100"
    assert "took" in watched.stdout.splitlines()[-1]
    failing = cli("trigger", "fan", "--store", "text=axb").stdout.strip()
    failed = cli("run", "watch", failing)
    assert failed.code == 1 and "Failed states (1)" in failed.stdout and "no x allowed" in failed.stdout
    as_json = cli("run", "watch", run_id, "--json")
    assert as_json.code == 0 and as_json.stdout.splitlines()[-1].startswith("{")


def test_watch_survives_a_server_restart_and_follows_the_run_to_its_end(
    cli: Cli, write_file: WriteFile, server: ServerProcess, namespace: str, start_runtime: Callable[[], None]
) -> None:
    # No runtime serves the graph yet: the run waits, and the watch with it.
    assert cli("graph", "apply", str(write_file("fan.yaml", fan_graph()))).code == 0
    run_id = cli("trigger", "fan", "--store", "text=abc").stdout.strip()
    watch = subprocess.Popen(
        [sys.executable, "-m", "exospherehost.cli", "run", "watch", run_id],
        env=_env(server, namespace),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # the snapshot: the watch is connected
        assert PROGRESS.match(first) and " RUNNING 0/1 states" in first, first
        server.kill()
        server.start()
        assert watch.poll() is None  # still watching while the server came back
        start_runtime()
        out, err = watch.communicate(timeout=120)
    finally:
        if watch.poll() is None:
            watch.kill()
    assert watch.returncode == 0, (out, err)
    assert err == ""
    final = [m for m in map(PROGRESS.match, out.splitlines()) if m][-1]
    assert final.group(2) == "SUCCESS" and final.group(3) == final.group(4) != "0"


def test_watch_on_a_terminal_draws_a_progress_bar(
    cli: Cli, write_file: WriteFile, runtime: None, server: ServerProcess, namespace: str
) -> None:
    assert cli("graph", "apply", str(write_file("fan.yaml", fan_graph()))).code == 0
    run_id = cli("trigger", "fan", "--store", "text=abcd").stdout.strip()
    main, terminal = pty.openpty()
    env = {**_env(server, namespace), "COLUMNS": "120", "TERM": "xterm"}
    watch = subprocess.Popen(
        [sys.executable, "-m", "exospherehost.cli", "run", "watch", run_id],
        env=env,
        stdin=terminal,
        stdout=terminal,
        stderr=subprocess.PIPE,
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal closed: the watch has ended
            break
        if not chunk:
            break
        shown += chunk
    assert watch.wait(timeout=120) == 0, watch.stderr.read() if watch.stderr else ""
    os.close(main)
    text = ANSI.sub("", shown.decode("utf-8", "replace"))
    assert "━" in text and "states" in text  # the bar and its count
    assert f"run {run_id}" in text and "SUCCESS" in text and "took" in text
