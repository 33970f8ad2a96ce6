"""What the CLI shows of runs: every failure of a large fan-out, tracebacks, runtimes, durations; keyed
and bulk triggers. A real SDK runtime (runtime_app.py) does the work."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from .conftest import Cli

WriteFile = Callable[[str, Any], Path]
FAILED_IN_TREE = re.compile(r"work \(Work\) ERRORED  [0-9a-f]{24} .*ValueError: no x allowed")
FAILED_ROW = re.compile(r"work \(Work\)\s*│\s*([0-9a-f]{24})\s*│\s*ERRORED")


def test_run_show_lists_every_failed_state_of_a_fan_out_of_300(cli: Cli, fan: str) -> None:
    text = "".join("x" if i in (7, 150, 299) else "a" for i in range(300))  # Work fails on "x": 3 of 300
    finished = cli("trigger", fan, "--store", f"text={text}", "--wait", "--json", "--timeout", "120s")
    assert finished.code == 1, finished
    body = finished.json()
    failed_ids = {s["state_id"] for s in body["states"] if s["status"] == "ERRORED"}
    assert len(failed_ids) == 3 and len([s for s in body["states"] if s["identifier"] == "work"]) == 300
    shown = cli("run", "show", body["run"]["run_id"])
    assert shown.code == 0, shown
    assert "Failed states (3)" in shown.stdout
    assert set(FAILED_ROW.findall(shown.stdout)) == failed_ids
    assert shown.stdout.count("ValueError: no x allowed") >= 3
    # Each failure hangs under its own (successful) fan-out sibling of `split`; the other successes
    # stay summarised.
    tree = shown.stdout.split("Failed states")[0]
    assert len(FAILED_IN_TREE.findall(tree)) == 3
    assert "… 295 more 'split' states" in tree
    assert re.search(r"took \d+(ms|\.\d+s|m\d\ds)", shown.stdout.splitlines()[0])


def test_state_show_prints_the_traceback_and_the_runtime_that_ran_it(cli: Cli, fan: str) -> None:
    states = cli("trigger", fan, "--store", "text=ax", "--wait", "--json").json()["states"]
    [failed] = [s for s in states if s["status"] == "ERRORED"]
    assert failed["runtime_name"] == "cli-test-runtime" and re.fullmatch(r".+:\d+", failed["runtime_instance"])
    assert failed["duration_ms"] is not None and failed["duration_ms"] >= 0
    shown = cli("state", "show", failed["state_id"])
    assert shown.code == 0, shown
    assert "Traceback (most recent call last)" in shown.stdout
    assert 'raise ValueError("no x allowed")' in shown.stdout and "runtime_app.py" in shown.stdout
    assert "cli-test-runtime (" in shown.stdout


def test_runs_show_each_run_s_duration(cli: Cli, fan: str) -> None:
    run = cli("trigger", fan, "--store", "text=ab", "--wait", "--json").json()["run"]
    assert run["duration_ms"] >= 0 and run["finished_at"] is not None and run["started_at"] == run["created_at"]
    listed = cli("runs")
    assert listed.code == 0, listed
    [row] = [line for line in listed.stdout.splitlines() if run["run_id"] in line]
    assert re.search(r"│\s*\d+(ms|\.\d+s)\s*│?\s*$", row), row


def test_trigger_with_an_idempotency_key_starts_one_run(cli: Cli, fan: str, api: httpx.Client) -> None:
    first = cli("trigger", fan, "--store", "text=ab", "--idempotency-key", "order-7")
    second = cli("trigger", fan, "--store", "text=ab", "--idempotency-key", "order-7")
    assert first.code == second.code == 0, (first, second)
    assert first.stdout == second.stdout
    assert api.get("/runs/1/10", params={"graph_name": fan}).json()["total"] == 1


def test_trigger_from_file_starts_one_run_per_line_or_entry(
    cli: Cli, fan: str, write_file: WriteFile, api: httpx.Client
) -> None:
    lines = "\n".join(json.dumps({"store": {"text": t}}) for t in ("ab", "cd", "ef")) + "\n\n"
    started = cli("trigger", fan, "--from-file", str(write_file("runs.jsonl", lines)))
    assert started.code == 0, started
    run_ids = started.stdout.split()
    assert len(set(run_ids)) == 3
    listed = [{"store": {"text": "gh"}, "idempotency_key": "k"}, {"store": {"text": "gh"}, "idempotency_key": "k"}]
    as_list = cli("trigger", fan, "--from-file", str(write_file("runs.json", json.dumps(listed))), "--json")
    assert as_list.code == 0, as_list
    [one, again] = as_list.json()["runs"]
    assert one["run_id"] == again["run_id"] and again["duplicate"] is True
    for run_id in run_ids:
        assert api.get(f"/run/{run_id}", params={"wait_ms": 20_000}).json()["status"] == "SUCCESS"


def test_trigger_from_a_bad_file_names_the_line_and_starts_nothing(
    cli: Cli, fan: str, write_file: WriteFile, api: httpx.Client
) -> None:
    cases = [
        ("bad.jsonl", '{"store": {"text": "a"}}\n{"store": \n', "line 2 is not valid JSON"),
        ("wrong.jsonl", '{"store": {"text": "a"}}\n{"store": {"text": 5}}\n', "line 2: store.text"),
        ("scalar.json", "[1]", "entry 0: each run must be a JSON object"),
        ("empty.jsonl", "\n", "holds no runs"),
    ]
    for name, content, fragment in cases:
        result = cli("trigger", fan, "--from-file", str(write_file(name, content)))
        assert result.code == 2 and fragment in result.stderr, (name, result)
    mixed = cli("trigger", fan, "--from-file", str(write_file("ok.jsonl", "{}")), "--store", "text=a")
    assert mixed.code == 2 and "drop --store" in mixed.stderr
    assert api.get("/runs/1/10").json()["total"] == 0
