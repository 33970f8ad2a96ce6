"""Every mistake a user can make ends as one `error:` line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from exosphere_testing import free_port

from .conftest import Cli, Result, fan_graph

WriteFile = Callable[[str, Any], Path]


def assert_one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def test_server_down(cli: Cli) -> None:
    result = cli("runs", "--server", f"http://127.0.0.1:{free_port()}")
    assert_one_line_error(result, 3, "cannot reach the state manager", "exosphere server")


def test_wrong_key_from_flag_or_environment(cli: Cli) -> None:
    assert_one_line_error(cli("graph", "list", "--key", "wrong"), 3, "refused the API key")
    assert_one_line_error(cli("runs", env={"EXOSPHERE_API_KEY": "wrong"}), 3, "refused the API key")


def test_address_and_namespace_come_from_flags_over_the_environment(cli: Cli, server: Any, namespace: str) -> None:
    env = {"EXOSPHERE_STATE_MANAGER_URI": "http://127.0.0.1:1", "EXOSPHERE_NAMESPACE": "elsewhere"}
    result = cli("runs", "--json", "--server", server.url, "--namespace", namespace, env=env)
    assert result.code == 0, result
    assert result.json()["namespace"] == namespace


def test_missing_namespace_and_bad_address(cli: Cli) -> None:
    assert_one_line_error(cli("runs", env={"EXOSPHERE_NAMESPACE": ""}), 2, "--namespace", "EXOSPHERE_NAMESPACE")
    assert_one_line_error(cli("runs", "--server", "localhost:8000"), 2, "invalid server address")


@pytest.mark.parametrize(
    ("filename", "content", "fragment"),
    [
        ("absent.yaml", None, "cannot read"),
        ("broken.yaml", "nodes: [a\n", "is not valid YAML"),
        ("broken.json", '{"nodes": [', "is not valid JSON"),
        ("list.yaml", "- 1\n- 2\n", "must hold a mapping"),
        ("typo.yaml", "name: g\nnodez: []\n", "unknown field(s) nodez"),
        ("nameless.yaml", "nodes: []\n", "no graph name"),
    ],
)
def test_bad_graph_files(
    cli: Cli, write_file: WriteFile, tmp_path: Path, filename: str, content: str | None, fragment: str
) -> None:
    path = write_file(filename, content) if content is not None else tmp_path / filename
    assert_one_line_error(cli("graph", "apply", str(path)), 2, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--input", "novalue"], "invalid --input 'novalue': expected KEY=VALUE"),
        (["--store", "=x"], "invalid --store '=x'"),
        (["--store", "a=1", "--store", "a=2"], "given twice"),
        (["--delay", "3x"], "invalid --delay '3x'"),
        (["--delay", "-5s"], "invalid --delay"),
        (["--wait", "--timeout", "soon"], "invalid --timeout 'soon'"),
        (["--timeout", "5s"], "--timeout only applies with --wait"),
    ],
)
def test_bad_trigger_arguments_start_nothing(cli: Cli, write_file: WriteFile, args: list[str], fragment: str) -> None:
    assert cli("graph", "apply", str(write_file("fan.yaml", fan_graph()))).code == 0
    assert_one_line_error(cli("trigger", "fan", *args), 2, fragment)
    assert cli("runs", "--json").json()["total"] == 0


def test_refused_trigger_says_why(cli: Cli, write_file: WriteFile) -> None:
    assert_one_line_error(cli("trigger", "nope"), 3, "not found")
    assert cli("graph", "apply", str(write_file("fan.yaml", fan_graph()))).code == 0
    assert_one_line_error(cli("trigger", "fan"), 3, "text")  # a required store key is missing


def test_bad_runs_filters(cli: Cli) -> None:
    assert_one_line_error(cli("runs", "--status", "weird"), 2, "invalid --status 'weird'")
    assert_one_line_error(cli("runs", "--limit", "0"), 2, "invalid --limit 0")
