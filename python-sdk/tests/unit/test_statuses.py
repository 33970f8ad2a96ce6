"""The state machine (`exospherehost.statuses`): each status's groups, the moves, the run status, and the
generated TypeScript copy. A new status fails here until every table below says how it is handled."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import exospherehost
import pytest
from exospherehost import models, statuses
from exospherehost.statuses import (
    ALLOWED_MOVES,
    FINAL,
    GROUPS,
    INITIAL,
    NEVER_STORED,
    PENDING,
    PHASE,
    IllegalMoveError,
    Phase,
    RunStatus,
    StateStatus,
    can_move,
    check_initial,
    check_move,
    run_status,
)

S = StateStatus
REPO = Path(__file__).resolve().parents[3]

# Every group each status belongs to. Adding a status means adding its row; adding a group, its column.
MEMBERSHIP: dict[StateStatus, set[str]] = {
    S.CREATED: {
        "WAITING",
        "PENDING",
        "INITIAL",
        "CANCELLABLE",
        "UNITE_ALL_SUCCESS_WAITS_ON",
        "UNITE_ALL_DONE_WAITS_ON",
    },
    S.QUEUED: {"RUNNING", "PENDING", "CANCELLABLE", "UNITE_ALL_SUCCESS_WAITS_ON", "UNITE_ALL_DONE_WAITS_ON"},
    S.EXECUTED: {"RUNNING", "PENDING", "NEVER_STORED", "UNITE_ALL_SUCCESS_WAITS_ON", "UNITE_ALL_DONE_WAITS_ON"},
    S.ERRORED: {"FAILED", "FINAL", "RETRYABLE_BY_HAND", "AFTER_ERRORED", "UNITE_ALL_SUCCESS_WAITS_ON"},
    S.NEXT_CREATED_ERROR: {
        "FAILED",
        "FINAL",
        "RETRYABLE_BY_HAND",
        "INITIAL",
        "AFTER_EXECUTED",
        "UNITE_ALL_SUCCESS_WAITS_ON",
    },
    S.SUCCESS: {"SUCCEEDED", "FINAL", "INITIAL", "AFTER_EXECUTED"},
    S.PRUNED: {"SUCCEEDED", "FINAL", "UNITE_ALL_SUCCESS_WAITS_ON"},
    S.RETRY_CREATED: {"RETRIED", "FINAL", "AFTER_ERRORED"},
    S.CANCELLED: {"CANCELLED", "FINAL", "UNITE_ALL_SUCCESS_WAITS_ON"},
    S.WAITING: {
        "AWAITING_SIGNAL",
        "PENDING",
        "CANCELLABLE",
        "UNITE_ALL_SUCCESS_WAITS_ON",
        "UNITE_ALL_DONE_WAITS_ON",
    },
    S.AWAITING_CHILD: {
        "AWAITING_CHILD",
        "PENDING",
        "INITIAL",
        "CANCELLABLE",
        "UNITE_ALL_SUCCESS_WAITS_ON",
        "UNITE_ALL_DONE_WAITS_ON",
    },
}
PHASES: dict[StateStatus, Phase] = {
    S.CREATED: Phase.WAITING,
    S.QUEUED: Phase.RUNNING,
    S.EXECUTED: Phase.RUNNING,
    S.ERRORED: Phase.ERRORED,
    S.NEXT_CREATED_ERROR: Phase.ERRORED,
    S.SUCCESS: Phase.SUCCESS,
    S.PRUNED: Phase.PRUNED,
    S.RETRY_CREATED: Phase.RETRIED,
    S.CANCELLED: Phase.CANCELLED,
    S.WAITING: Phase.WAITING,
    S.AWAITING_CHILD: Phase.RUNNING,
}
# pending/success/errored/retried/cancelled_count
RUN_COUNT_GROUPS = ("PENDING", "SUCCEEDED", "FAILED", "RETRIED", "CANCELLED")


@pytest.mark.parametrize("status", list(StateStatus))
def test_each_status_is_in_exactly_the_groups_of_its_row(status: StateStatus) -> None:
    assert status in MEMBERSHIP, f"{status} has no row in MEMBERSHIP: say which groups it belongs to"
    assert {name for name, group in GROUPS.items() if status in group} == MEMBERSHIP[status]


@pytest.mark.parametrize("status", list(StateStatus))
def test_each_status_has_one_phase_and_one_run_count(status: StateStatus) -> None:
    assert PHASE[status] is PHASES[status]
    counted_in = [name for name in RUN_COUNT_GROUPS if status in GROUPS[name]]
    assert len(counted_in) == 1, f"{status} is counted in {counted_in}: a run counts each status exactly once"


def test_every_group_has_a_column_in_the_table_and_every_phase_is_used() -> None:
    assert set(GROUPS) == set().union(*MEMBERSHIP.values())
    assert set(PHASE.values()) == set(Phase)
    assert set(StateStatus) == PENDING | FINAL and not PENDING & FINAL


def test_allowed_moves_name_every_status_and_only_statuses() -> None:
    assert list(ALLOWED_MOVES) == list(StateStatus)
    for source, targets in ALLOWED_MOVES.items():
        assert source not in targets, f"{source} moves to itself"
        assert all(isinstance(target, StateStatus) for target in targets)


def test_every_stored_status_is_reachable_from_a_new_state_and_never_stored_ones_are_not() -> None:
    reached, frontier = set(INITIAL), list(INITIAL)
    while frontier:
        for target in ALLOWED_MOVES[frontier.pop()]:
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(StateStatus) - NEVER_STORED
    assert all(not ALLOWED_MOVES[status] for status in NEVER_STORED)


def test_a_final_state_never_runs_again() -> None:
    """A retry is a new state: nothing moves a FINAL state back to PENDING."""
    for status in FINAL:
        assert not ALLOWED_MOVES[status] & PENDING, status


def test_the_transitions_end_where_the_groups_say() -> None:
    assert (
        statuses.AFTER_EXECUTED | statuses.AFTER_ERRORED | {S.PRUNED, S.CREATED, S.CANCELLED, S.WAITING}
        == ALLOWED_MOVES[S.QUEUED]
    )
    # A wait ends by its signal (run again), its time-out (the retry policy) or its run's cancel.
    assert statuses.AFTER_ERRORED | {S.CREATED, S.CANCELLED} == ALLOWED_MOVES[S.WAITING]
    # A state awaiting its child run ends with it: a result, a failed attempt, or its run's cancel.
    assert statuses.AFTER_EXECUTED | statuses.AFTER_ERRORED | {S.CANCELLED} == ALLOWED_MOVES[S.AWAITING_CHILD]
    for status in statuses.CANCELLABLE:
        assert can_move(status, S.CANCELLED)
    for status in statuses.RETRYABLE_BY_HAND:
        assert can_move(status, S.RETRY_CREATED)


def test_can_move_takes_members_and_plain_strings_and_refuses_unknown_names() -> None:
    assert can_move(S.CREATED, S.QUEUED)
    assert can_move("QUEUED", "PRUNED")
    assert not can_move("SUCCESS", "QUEUED")
    assert not can_move("CANCELLED", "QUEUED")
    assert can_move("CREATED", "CANCELLED")
    assert not can_move("SUCCESS", "CANCELLED")
    check_move("ERRORED", "RETRY_CREATED")
    with pytest.raises(IllegalMoveError, match="from SUCCESS to QUEUED"):
        check_move(S.SUCCESS, S.QUEUED)
    check_initial("CREATED")
    with pytest.raises(IllegalMoveError, match="cannot be created QUEUED"):
        check_initial(S.QUEUED)


@pytest.mark.parametrize(
    ("pending", "failed", "total", "expected"),
    [
        (1, 0, 1, RunStatus.PENDING),
        (2, 1, 5, RunStatus.PENDING),
        (0, 1, 5, RunStatus.FAILED),
        (0, 0, 0, RunStatus.FAILED),
        (0, 0, 3, RunStatus.SUCCESS),
    ],
)
def test_run_status(pending: int, failed: int, total: int, expected: RunStatus) -> None:
    assert run_status(pending=pending, failed=failed, total=total) is expected


def test_a_run_with_cancelled_states_and_nothing_pending_is_cancelled_whatever_else_failed() -> None:
    assert run_status(pending=0, failed=2, total=9, cancelled=3) is RunStatus.CANCELLED
    assert run_status(pending=1, failed=0, total=9, cancelled=3) is RunStatus.PENDING


def test_the_old_names_are_the_same_class_and_statuses_read_as_their_value() -> None:
    assert models.StateStatusEnum is StateStatus is exospherehost.StateStatusEnum
    assert exospherehost.RunStatus is RunStatus
    assert [s.value for s in StateStatus] == [
        "CREATED",
        "QUEUED",
        "EXECUTED",
        "ERRORED",
        "NEXT_CREATED_ERROR",
        "SUCCESS",
        "PRUNED",
        "RETRY_CREATED",
        "CANCELLED",
        "WAITING",
        "AWAITING_CHILD",
    ]
    assert f"{S.SUCCESS}" == str(S.SUCCESS) == "SUCCESS" == S.SUCCESS
    assert "ERRORED" in statuses.FAILED and PHASE.get("QUEUED") is Phase.RUNNING and PHASE.get("NEW") is None


def _generator() -> ModuleType:
    path = REPO / "scripts" / "generate_state_machine.py"
    spec = importlib.util.spec_from_file_location("generate_state_machine", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_typescript_copy_is_what_the_generator_writes_now() -> None:
    generator = _generator()
    committed = generator.TARGET.read_text(encoding="utf-8") if generator.TARGET.exists() else ""
    assert committed == generator.render(), (
        f"{generator.TARGET.relative_to(REPO)} is out of date: run scripts/generate_state_machine.py"
    )
