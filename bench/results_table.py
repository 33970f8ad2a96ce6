"""The table and the results file of `make bench`, shared by `bench/run.py` and the peers in `bench/peers/`.

Standard library only: a peer's benchmark runs in its own virtual environment (Celery's, say), which
has none of the project's packages, and still prints the same table and writes the same kind of file.

    >>> record = {"commit": "0e8b7eea79aa", "dirty": False, "date": "2026-12-03T06:30:38+00:00",
    ...           "cpu_count": 2, "load_before": [0.5, 0, 0], "load_after": [1.5, 0, 0], "results": []}
    >>> results_path(record, Path("bench/results"), "celery").name
    '20261203T063038Z-0e8b7eea79-celery.json'
"""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

COLUMNS = [  # heading, key, decimals
    ("wall/hop ms", "hop_wall_ms", 1),
    ("hop p50 ms", "hop_p50_ms", 1),
    ("hop p99 ms", "hop_p99_ms", 1),
    ("(B) states/s", "states_per_s", 0),
    ("(B bulk) states/s", "bulk_states_per_s", 0),
    ("drain states/s", "drain_states_per_s", 0),
    ("(C) fan 200 ms", "fan_out_ms", 0),
    ("drain CPU ms/state: server", "drain_server_cpu_ms_per_state", 2),
    ("runtime", "drain_runtime_cpu_ms_per_state", 2),
]


def git(*args: str) -> str:
    """`git ARGS` in the repository, its output stripped."""
    return subprocess.run(["git", *args], cwd=REPO, check=True, capture_output=True, text=True).stdout.strip()


def commit_and_dirty() -> dict[str, Any]:
    """The commit the benchmark ran at, and whether tracked files differed from it."""
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def cell(results: list[dict[str, Any]], key: str, digits: int) -> str:
    """The median of `key` over `results`, with the range in brackets when there are several; `-` when
    no result has the figure (a peer without that workload)."""
    values = sorted(r[key] for r in results if r.get(key) is not None)
    if not values:
        return "-"
    middle = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1:
        return middle
    return f"{middle} ({values[0]:.{digits}f}–{values[-1]:.{digits}f})"


def table_lines(record: dict[str, Any]) -> list[str]:
    """The heading line and one aligned row per backend and runtime of `record["results"]`."""
    lines = [
        f"commit {record['commit'][:10]}{' (dirty)' if record['dirty'] else ''}, {record['date']}, "
        f"{record['cpu_count']} CPUs, load {record['load_before'][0]:.2f} before, "
        f"{record['load_after'][0]:.2f} after"
    ]
    if record.get("runtime_sdk"):
        lines.append(f"runtimes ran the SDK in {record['runtime_sdk']}")
    rows = [["backend", "runtime", *(heading for heading, _, _ in COLUMNS)]]
    for backend in dict.fromkeys(r["backend"] for r in record["results"]):
        for runtime in dict.fromkeys(r["runtime"] for r in record["results"]):
            mine = [r for r in record["results"] if r["backend"] == backend and r["runtime"] == runtime]
            if mine:
                rows.append([backend, runtime, *(cell(mine, key, digits) for _, key, digits in COLUMNS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        lines.append(
            "  ".join(
                text.ljust(width) if i < 2 else text.rjust(width)
                for i, (text, width) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return lines


def progress_line(round_number: int, result: dict[str, Any]) -> str:
    """One configuration's figures on one line, printed as soon as it has run."""
    figures = ", ".join(
        f"{heading} {result[key]:.{digits}f}" for heading, key, digits in COLUMNS if result.get(key) is not None
    )
    return f"round {round_number}: {result['backend']} {result['runtime']}: {figures}"


def join_rounds(records: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """One record of several rounds run as separate commands (a peer's, one per round of `bench/run.py
    --peers`): the first one's description, every round's results, the load before the first and after
    the last, and `command`, the command that ran them all."""
    return {
        **records[0],
        "command": command,
        "load_after": records[-1]["load_after"],
        "results": [result for record in records for result in record["results"]],
    }


def results_path(record: dict[str, Any], directory: Path, suffix: str = "") -> Path:
    """`<directory>/<date>-<commit>[-dirty][-suffix].json` for `record`."""
    stamp = record["date"].replace("-", "").replace(":", "")[:15] + "Z"
    name = f"{stamp}-{record['commit'][:10]}{'-dirty' if record['dirty'] else ''}"
    return directory / f"{name}{'-' + suffix if suffix else ''}.json"


def write_record(record: dict[str, Any], directory: Path, suffix: str = "") -> Path:
    """Write `record` as indented JSON to its `results_path`; returns that path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = results_path(record, directory, suffix)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path
