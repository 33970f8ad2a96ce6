"""`exosphere trigger`, `runs`, `run show`, `state show | retry` with a real SDK runtime doing the work."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .conftest import SECRET_VALUE, Cli

WriteFile = Callable[[str, Any], Path]
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def test_trigger_prints_only_the_run_id(cli: Cli, fan: str, api: httpx.Client) -> None:
    result = cli("trigger", fan, "--store", "text=ab")
    assert result.code == 0, result
    run_id = result.stdout.strip()
    assert RUN_ID.fullmatch(run_id)
    assert api.get(f"/run/{run_id}", params={"wait_ms": 20_000}).json()["status"] == "SUCCESS"


def test_trigger_wait_follows_a_fan_out_and_unite_to_success_and_prints_the_outputs(cli: Cli, fan: str) -> None:
    result = cli("trigger", fan, "--store", "text=abc", "--wait", "--timeout", "60s")
    assert result.code == 0, result
    assert "SUCCESS" in result.stdout
    # The live view's last frame: one row per node with its fan-out count.
    rows = {
        cells[0]: cells
        for line in result.stdout.splitlines()
        if line.startswith("│") and (cells := [c.strip() for c in line.strip("│").split("│")])
    }
    header = ["node", "waiting", "running", "succeeded", "pruned", "retried", "errored", "cancelled", "total"]
    assert rows["work (Work)"][header.index("succeeded")] == rows["work (Work)"][header.index("total")] == "3"
    assert rows["merge (Merge)"][header.index("succeeded")] == rows["merge (Merge)"][header.index("total")] == "1"
    # The outputs of the last node: Merge ran once, after every branch.
    assert result.stdout.count('"summary": "merged abc"') == 1
    assert "Errors" not in result.stdout and result.stderr == ""


def test_trigger_wait_json_reports_the_run_and_every_state(cli: Cli, fan: str) -> None:
    result = cli("trigger", fan, "--store", "text=xy", "--input", "text=ab", "--wait", "--json")
    assert result.code == 0, result  # --input overrides the root's store placeholder
    body = result.json()
    assert body["run"]["status"] == "SUCCESS" and body["run"]["finished"]
    assert len([s for s in body["states"] if s["identifier"] == "work"]) == 2
    assert SECRET_VALUE not in result.stdout


def test_trigger_wait_exits_non_zero_and_prints_the_error_when_a_state_fails(cli: Cli, fan: str) -> None:
    result = cli("trigger", fan, "--store", "text=axb", "--wait")
    assert result.code == 1, result
    assert "FAILED" in result.stdout
    assert "Errors" in result.stdout and "ValueError: no x allowed" in result.stdout
    early = cli("trigger", fan, "--store", "text=fail", "--wait")
    assert early.code == 1 and "the plan cannot start" in early.stdout


def test_trigger_wait_timeout_says_so_and_the_run_goes_on(cli: Cli, fan: str, write_file: WriteFile) -> None:
    idle = write_file("idle.yaml", {"name": "idle", "nodes": [{"node_name": "NobodyServesThis", "identifier": "n"}]})
    assert cli("graph", "apply", str(idle)).code == 0
    result = cli("trigger", "idle", "--wait", "--timeout", "1s")
    assert result.code == 4, result
    assert result.stderr.startswith("error: timed out after 1.0s waiting for run ")
    assert len(result.stderr.strip().splitlines()) == 1
    run_id = RUN_ID.search(result.stderr)
    assert run_id and cli("run", "show", run_id.group(0), "--json").json()["run"]["status"] == "PENDING"


def test_trigger_delay_holds_the_root_state_back(cli: Cli, fan: str) -> None:
    run_id = cli("trigger", fan, "--store", "text=a", "--delay", "1h").stdout.strip()
    [root] = cli("run", "show", run_id, "--json").json()["states"]
    assert root["status"] == "CREATED"
    created = cli("state", "show", root["state_id"], "--json").json()
    assert created["enqueue_after"] > 3_500_000 + _epoch_ms(created["created_at"])


def _epoch_ms(iso: str) -> int:
    from datetime import UTC, datetime

    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def test_runs_lists_as_table_and_json_with_graph_status_and_limit_filters(cli: Cli, fan: str) -> None:
    good = cli("trigger", fan, "--store", "text=ab", "--wait", "--json").json()["run"]["run_id"]
    bad = cli("trigger", fan, "--store", "text=x", "--wait", "--json").json()["run"]["run_id"]
    table = cli("runs")
    assert table.code == 0 and good in table.stdout and bad in table.stdout
    listed = cli("runs", "--json").json()
    assert listed["total"] == 2 and [r["run_id"] for r in listed["runs"]] == [bad, good]  # newest first
    assert [r["run_id"] for r in cli("runs", "--status", "failed", "--json").json()["runs"]] == [bad]
    assert [r["run_id"] for r in cli("runs", "--status", "SUCCESS", "--json").json()["runs"]] == [good]
    assert cli("runs", "--status", "pending", "--json").json()["runs"] == []
    assert cli("runs", "--graph", "other", "--json").json()["total"] == 0
    assert len(cli("runs", "--limit", "1", "--json").json()["runs"]) == 1


def test_run_show_is_a_tree_of_states_with_status_attempts_durations_and_errors(cli: Cli, fan: str) -> None:
    run_id = cli("trigger", fan, "--store", "text=ax", "--wait", "--json").json()["run"]["run_id"]
    shown = cli("run", "show", run_id)
    assert shown.code == 0, shown
    lines = shown.stdout.splitlines()
    assert run_id in lines[0] and "FAILED" in lines[0]
    plan = next(i for i, line in enumerate(lines) if "plan (Plan) SUCCESS" in line)
    split = next(i for i, line in enumerate(lines) if "split (Split) SUCCESS" in line)
    failed = next(line for line in lines if "work (Work) ERRORED" in line)
    assert plan < split
    assert _depth(lines[split]) > _depth(lines[plan])  # split hangs under plan
    assert "attempts 1" in failed and "ValueError: no x allowed" in failed
    assert re.search(r"attempts 1, \d+(ms|\.\d+s)", failed)
    as_json = cli("run", "show", run_id, "--json").json()
    assert as_json["run"]["run_id"] == run_id and len(as_json["states"]) == as_json["run"]["total_count"]


def _depth(line: str) -> int:
    return len(line) - len(line.lstrip("│├└─ "))


def test_state_show_prints_inputs_outputs_error_and_attempts_never_secrets(cli: Cli, fan: str) -> None:
    states = cli("trigger", fan, "--store", "text=ax", "--wait", "--json").json()["states"]
    [failed] = [s for s in states if s["status"] == "ERRORED"]
    [done] = [s for s in states if s["identifier"] == "work" and s["status"] == "SUCCESS"]
    shown = cli("state", "show", failed["state_id"])
    assert shown.code == 0, shown
    for text in (failed["state_id"], "ERRORED", "work (Work", "attempts", "Inputs", "item", "no x allowed"):
        assert text in shown.stdout, text
    output = cli("state", "show", done["state_id"])
    assert '"done"' not in output.stdout and "done" in output.stdout and "A" in output.stdout
    assert cli("state", "show", done["state_id"], "--json").json()["outputs"] == {"done": "A"}
    assert SECRET_VALUE not in shown.stdout + output.stdout


def test_state_retry_creates_a_new_attempt_and_refuses_a_second_retry_of_the_same_state(cli: Cli, fan: str) -> None:
    body = cli("trigger", fan, "--store", "text=x", "--wait", "--json").json()
    [failed] = [s for s in body["states"] if s["status"] == "ERRORED"]
    retried = cli("state", "retry", failed["state_id"])
    assert retried.code == 0, retried
    new_id = retried.stdout.split()[-1]
    assert re.fullmatch(r"[0-9a-f]{24}", new_id)
    again = cli("state", "retry", failed["state_id"])
    assert again.code == 3 and again.stderr.startswith(f"error: cannot retry state {failed['state_id']}")
    states = cli("run", "show", body["run"]["run_id"], "--json").json()["states"]
    assert {s["state_id"]: s["status"] for s in states}[failed["state_id"]] == "RETRY_CREATED"
    assert new_id in {s["state_id"] for s in states}
    success = cli("state", "retry", next(s["state_id"] for s in states if s["status"] == "SUCCESS"))
    assert success.code == 3 and "only ERRORED or NEXT_CREATED_ERROR" in success.stderr


def test_unknown_run_and_state_are_one_line_errors(cli: Cli) -> None:
    run = cli("run", "show", str(uuid.uuid4()))
    state = cli("state", "show", "0123456789abcdef01234567")
    for result in (run, state):
        assert result.code == 3 and result.stdout == ""
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "not found" in run.stderr and "not found" in state.stderr
