"""Every place that shows or counts statuses handles every status of `exospherehost.statuses`: the CLI's
styles and columns, the dashboard's phases, labels and colours, the run counts and the API's filters.
A new status or phase fails here, naming the place that does not know it yet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from exosphere_server.dashboard import data
from exosphere_server.storage.records import RunCounts
from exospherehost.cli import render, runs
from exospherehost.statuses import PHASE, Phase, RunStatus, StateStatus

STATIC = Path(data.__file__).parent / "static"


@pytest.mark.parametrize("status", [*StateStatus, *RunStatus])
def test_the_cli_has_a_style_for_every_status(status: str) -> None:
    assert render.STATUS_STYLE.get(status), f"cli/render.py shows {status} without a style"


def test_the_cli_progress_view_has_one_column_per_phase() -> None:
    assert sorted(phase for _, phase in render.PROGRESS_COLUMNS) == sorted(Phase)
    assert set(render.PHASE_STYLE) == set(Phase)


def test_the_cli_and_the_api_filter_runs_by_every_run_status() -> None:
    assert list(runs.RUN_STATUSES) == list(RunStatus)


def test_the_dashboard_orders_labels_and_lists_every_phase_and_status() -> None:
    assert sorted(data.PHASES) == sorted(Phase)
    assert sorted(data.PHASE_PRIORITY) == sorted(Phase)
    assert set(data.PHASE_LABELS) == set(Phase)
    assert sorted(data.ALL_STATUSES) == sorted(StateStatus)
    assert list(data.RUN_STATUSES) == list(RunStatus)


@pytest.mark.parametrize("phase", list(Phase))
def test_the_dashboard_has_a_colour_for_every_phase(phase: Phase) -> None:
    css = (STATIC / "dashboard.css").read_text()
    for rule in (f"--{phase}:", f".p-{phase}", f".phase-{phase} .box", f".phase-{phase} .dot", f".seg-{phase}"):
        assert rule in css, f"dashboard.css has no {rule!r}: states in phase {phase} would be drawn without colour"


@pytest.mark.parametrize("status", list(RunStatus))
def test_the_dashboard_has_a_badge_for_every_run_status(status: RunStatus) -> None:
    assert f".r-{status.lower()}" in (STATIC / "dashboard.css").read_text()


def test_the_dashboard_script_lists_no_status_of_its_own() -> None:
    """dashboard.js reads phases and statuses from the page (data.PAGE_STATUSES), never from a copy."""
    script = (STATIC / "dashboard.js").read_text()
    names = [*StateStatus, *(phase.value for phase in Phase)]
    copies = [name for name in names if re.search(rf"[\"'`]{name}[\"'`]", script)]
    assert copies == []


@pytest.mark.parametrize("status", list(StateStatus))
def test_a_run_counts_every_status_exactly_once(status: StateStatus) -> None:
    counts = RunCounts()
    counts.add(status, 3)
    assert counts.total == 3
    assert PHASE[status]  # and every status has a phase to be drawn in


def test_a_run_refuses_to_count_a_status_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="PAUSED"):
        RunCounts().add("PAUSED", 1)
