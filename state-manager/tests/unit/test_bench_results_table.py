"""`bench/results_table.py`: the table and results file shared by `make bench` and its Celery peer."""

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[3]


def _load() -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the module from its file.
    spec = importlib.util.spec_from_file_location("results_table", REPO / "bench" / "results_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


table = _load()


def _record(results: list[dict[str, Any]], dirty: bool = False) -> dict[str, Any]:
    return {
        "commit": "0e8b7eea79aabbccdd",
        "dirty": dirty,
        "date": "2026-12-03T06:30:38+00:00",
        "cpu_count": 2,
        "load_before": [0.03, 0.1, 0.2],
        "load_after": [1.5, 0.9, 0.4],
        "results": results,
    }


def _figures(backend: str, runtime: str, hop: float, bulk: float | None) -> dict[str, Any]:
    return {
        "backend": backend,
        "runtime": runtime,
        "hop_wall_ms": hop,
        "hop_p50_ms": 1.6,
        "hop_p99_ms": 6.3,
        "states_per_s": 844.0,
        "bulk_states_per_s": bulk,
        "drain_states_per_s": 3759.0,
        "fan_out_ms": 58.0,
        "drain_server_cpu_ms_per_state": 0.2,
        "drain_runtime_cpu_ms_per_state": 0.1,
    }


def test_a_cell_is_the_median_with_the_range_of_several_results() -> None:
    results = [{"k": 3.0}, {"k": 1.0}, {"k": 2.0}]
    assert table.cell(results, "k", 1) == "2.0 (1.0–3.0)"
    assert table.cell(results[:1], "k", 0) == "3"


def test_a_figure_that_a_peer_does_not_have_shows_as_a_dash() -> None:
    assert table.cell([{"k": None}, {}], "k", 1) == "-"


def test_our_rows_and_a_peers_rows_line_up_in_one_table() -> None:
    lines = table.table_lines(
        _record(
            [
                _figures("sqlite", "tuned", 2.8, 3692.0),
                _figures("sqlite", "tuned", 3.0, 3500.0),
                _figures("redis", "celery-default", 2.7, None),
            ]
        )
    )
    assert lines[0] == "commit 0e8b7eea79, 2026-12-03T06:30:38+00:00, 2 CPUs, load 0.03 before, 1.50 after"
    heading, ours, celery = lines[1:]
    assert heading.split()[:3] == ["backend", "runtime", "wall/hop"]
    assert ours.split()[:4] == ["sqlite", "tuned", "2.9", "(2.8–3.0)"]
    assert celery.split()[:3] == ["redis", "celery-default", "2.7"]
    # Every figure ends under the end of its heading: the (B bulk) column is the fifth heading.
    bulk_end = heading.index("(B bulk) states/s") + len("(B bulk) states/s")
    assert celery[:bulk_end].endswith(" -")
    assert ours[:bulk_end].endswith("(3500–3692)")


def test_the_results_file_is_named_by_date_commit_and_peer_and_holds_the_record(tmp_path: Path) -> None:
    record = _record([_figures("redis", "celery-tuned", 2.5, 412.0)], dirty=True)
    path = table.write_record(record, tmp_path / "results", "celery")
    assert path == tmp_path / "results" / "20261203T063038Z-0e8b7eea79-dirty-celery.json"
    assert json.loads(path.read_text()) == record
    clean = _record([])
    assert table.results_path(clean, tmp_path).name == "20261203T063038Z-0e8b7eea79.json"


def test_a_peers_rounds_join_into_one_record_with_the_load_before_the_first_and_after_the_last() -> None:
    first = {**_record([_figures("redis", "celery-tuned", 2.5, 412.0)]), "command": "bench.py --rounds 1"}
    second = {
        **_record([_figures("redis", "celery-tuned", 2.7, 400.0)]),
        "load_before": [6.0, 0, 0],
        "load_after": [7.0, 0, 0],
    }
    joined = table.join_rounds([first, second], "bench/run.py --peers celery --rounds 2")
    assert joined["command"] == "bench/run.py --peers celery --rounds 2"
    assert (joined["load_before"][0], joined["load_after"][0]) == (0.03, 7.0)
    assert [r["hop_wall_ms"] for r in joined["results"]] == [2.5, 2.7]
    assert first["results"] == [_figures("redis", "celery-tuned", 2.5, 412.0)]  # the rounds are left as they were
