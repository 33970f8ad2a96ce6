"""`exosphere graph apply | list | show` against a real server."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .conftest import SECRET_VALUE, Cli, fan_graph

WriteFile = Callable[[str, Any], Path]
REPO = Path(__file__).resolve().parents[3]


def test_apply_a_valid_yaml_file_prints_valid_and_the_graph_is_stored(cli: Cli, write_file: WriteFile) -> None:
    result = cli("graph", "apply", str(write_file("fan.yaml", fan_graph())))
    assert result.code == 0, result
    assert "graph fan version 1: VALID" in result.stdout
    # Nothing is registered yet: the server says so, as warnings.
    assert "warning: Node Plan" in result.stdout
    again = cli("graph", "apply", str(write_file("fan.yaml", fan_graph())), "--json")
    assert again.code == 0 and again.json()["version"] == 2


def test_apply_a_json_file_with_the_name_given_by_flag(cli: Cli, write_file: WriteFile) -> None:
    graph = {k: v for k, v in fan_graph().items() if k != "name"}
    result = cli("graph", "apply", str(write_file("graph.json", graph)), "--name", "from-flag")
    assert result.code == 0, result
    assert "graph from-flag version 1: VALID" in result.stdout


def test_apply_lists_every_structural_error_with_its_node_and_saves_nothing(cli: Cli, write_file: WriteFile) -> None:
    graph = {
        "name": "broken",
        "nodes": [
            {"node_name": "A", "identifier": "a", "next_nodes": ["b", "ghost"]},
            {"node_name": "B", "identifier": "b", "inputs": {"x": "${{ c.outputs.y }}"}},
            {"node_name": "C", "identifier": "c"},
        ],
    }
    result = cli("graph", "apply", str(write_file("broken.yaml", graph)))
    assert result.code == 1, result
    assert "graph broken: INVALID (nothing was saved)" in result.stdout
    errors = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("error:")]
    assert len(errors) == 3, result.stdout
    assert any("'a'" in e and "ghost" in e for e in errors)
    assert any("'b'" in e and "'x'" in e for e in errors)
    assert cli("graph", "show", "broken").code == 3


def test_apply_names_the_node_and_field_of_each_malformed_entry(cli: Cli, write_file: WriteFile) -> None:
    graph = {
        "name": "malformed",
        "nodes": [
            {"node_name": "A", "identifier": "first", "next_nodes": "second"},
            {"node_name": "", "identifier": "second"},
        ],
        "retry_policy": {"max_retries": -1},
    }
    result = cli("graph", "apply", str(write_file("malformed.yaml", graph)))
    assert result.code == 1, result
    assert "node 'first' field 'next_nodes'" in result.stdout
    assert "node 'second' field 'node_name'" in result.stdout
    assert "field 'retry_policy.max_retries'" in result.stdout


def test_apply_of_a_graph_that_contradicts_registered_nodes_prints_invalid_with_reasons(
    cli: Cli, write_file: WriteFile, runtime: None
) -> None:
    graph = fan_graph("mismatch")
    graph["nodes"][0]["inputs"] = {"wrong": "1"}
    result = cli("graph", "apply", str(write_file("mismatch.yaml", graph)))
    assert result.code == 1, result
    assert "graph mismatch version 1: INVALID" in result.stdout
    assert "error: " in result.stdout and "'text'" in result.stdout


def test_list_and_show_never_print_secret_values(cli: Cli, write_file: WriteFile) -> None:
    assert cli("graph", "apply", str(write_file("fan.yaml", fan_graph()))).code == 0
    listed = cli("graph", "list")
    assert listed.code == 0 and "fan" in listed.stdout and "VALID" in listed.stdout
    assert [g["name"] for g in cli("graph", "list", "--json").json()] == ["fan"]
    shown = cli("graph", "show", "fan")
    assert shown.code == 0, shown
    for text in ("plan", "split", "work", "merge", "Merge", "plan (ALL_SUCCESS)", "token", "max_retries=0"):
        assert text in shown.stdout, text
    as_json = cli("graph", "show", "fan", "--json")
    assert as_json.json()["secrets"] == {"token": True}
    assert SECRET_VALUE not in shown.stdout + as_json.stdout + listed.stdout


def test_the_documented_example_of_every_error_at_once_is_what_apply_prints(cli: Cli) -> None:
    page = (REPO / "docs" / "cli.md").read_text()
    block = re.search(r"<!-- broken-graph-output -->\n```console\n\$ exosphere (.*)\n((?:.*\n)*?)```", page)
    assert block, "docs/cli.md lost its broken-graph example"
    command, expected = block.group(1).split(), block.group(2)
    command[command.index("examples/broken-graph.yaml")] = str(REPO / "examples" / "broken-graph.yaml")
    command = command[: command.index("-n")]  # the test's own namespace instead of `demo`
    result = cli(*command)
    assert result.code == 1
    assert result.stdout == expected
