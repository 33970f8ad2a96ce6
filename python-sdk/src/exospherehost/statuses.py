"""The state machine: the statuses of a state, the groups code asks about, and the moves between them.

This module is the one place that says what a status means. The server (its engine, the storage
queries, ``/metrics``, the dashboard), the CLI and both SDKs read it from here. The TypeScript SDK's
copy, ``typescript-sdk/src/generated/stateMachine.ts``, is generated from it by
``scripts/generate_state_machine.py``. To add a status, add it to :class:`StateStatus`, to the groups
it belongs to, to :data:`PHASE` and to :data:`ALLOWED_MOVES`, then run the generator. The tests
(``python-sdk/tests/unit/test_statuses.py`` and the server's) then name every place that does not
handle it yet.

A state's life, as this server runs it (PROTOCOL §7.1)::

    (new) -> CREATED -> QUEUED -> SUCCESS | NEXT_CREATED_ERROR | PRUNED | ERRORED | RETRY_CREATED
                ^          |
                +----------+  released, or ReQueueAfter
    ERRORED | NEXT_CREATED_ERROR -> RETRY_CREATED  (retried by hand)
    QUEUED -> WAITING -> CREATED  (WaitForSignal; its signal arrived, so it runs again)
    WAITING -> ERRORED | RETRY_CREATED  (its wait timed out: the retry policy applies)
    (new) -> AWAITING_CHILD -> SUCCESS | NEXT_CREATED_ERROR  (its node names a graph: that child run succeeded)
    AWAITING_CHILD -> ERRORED | RETRY_CREATED  (its child run failed, or could not start)
    CREATED | QUEUED | WAITING | AWAITING_CHILD -> CANCELLED  (its run was cancelled, by hand or by its deadline)

Every group is a ``frozenset`` of :class:`StateStatus`. Because ``StateStatus`` is a ``StrEnum``, a
plain string read from the wire or the database is found in a group too.

Example::

    from exospherehost.statuses import FAILED, PENDING, RunStatus, StateStatus, can_move, run_status

    can_move(StateStatus.QUEUED, StateStatus.SUCCESS)  # True: a runtime reported a result
    can_move("SUCCESS", "QUEUED")                      # False: a succeeded state is never claimed again
    "ERRORED" in FAILED                                # True
    [str(s) for s in sorted(PENDING)]                  # ['CREATED', 'EXECUTED', 'QUEUED']
    run_status(pending=0, failed=1, total=5)           # RunStatus.FAILED
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class StateStatus(StrEnum):
    """Status of one node execution (a *state*).

    ``exospherehost.StateStatusEnum`` (its name in earlier releases) is this class.

    Example::

        StateStatus("QUEUED") is StateStatus.QUEUED  # True
        f"{StateStatus.SUCCESS}"                     # 'SUCCESS'
    """

    CREATED = "CREATED"
    """Waiting for a runtime: claimable once its ``enqueue_after`` has passed."""
    QUEUED = "QUEUED"
    """Claimed: a runtime holds it under a lease."""
    EXECUTED = "EXECUTED"
    """A v0 name this server never stores (see :data:`NEVER_STORED`); the answer to ``executed`` still says it."""
    ERRORED = "ERRORED"
    """Failed with no retry left; a person may still retry it by hand."""
    NEXT_CREATED_ERROR = "NEXT_CREATED_ERROR"
    """Its result was recorded, but the states after it could not be built (the error says why)."""
    SUCCESS = "SUCCESS"
    """Its result was recorded and the states after it exist."""
    PRUNED = "PRUNED"
    """The node ended this branch of the run (``PruneSignal``)."""
    RETRY_CREATED = "RETRY_CREATED"
    """Replaced by a newer attempt, made by the retry policy or by hand."""
    CANCELLED = "CANCELLED"
    """Its run was cancelled before it ended: it never runs, and a result sent for it is refused."""
    WAITING = "WAITING"
    """Its node raised ``WaitForSignal``: it waits, holding no runtime and no lease, for a signal sent to
    its run (then it runs again, the signal given to it) or for its wait's time-out (a failed attempt)."""
    AWAITING_CHILD = "AWAITING_CHILD"
    """Its node names a graph (``graph_name``): a child run of that graph runs for it, while it holds no
    runtime and no lease; it ends with the child run (its outputs, or its failure through the retry policy)."""


class RunStatus(StrEnum):
    """Status of a run, derived from how many of its states are pending and failed (PROTOCOL §4.16).

    :func:`run_status` derives it.

    Example::

        RunStatus("FAILED") is RunStatus.FAILED  # True
    """

    PENDING = "PENDING"
    """Some state is still :data:`PENDING`."""
    SUCCESS = "SUCCESS"
    """No state is pending and none :data:`FAILED`."""
    FAILED = "FAILED"
    """No state is pending and some state failed, or the run has no state at all."""
    CANCELLED = "CANCELLED"
    """The run was cancelled (by hand or by its deadline) while states were pending."""


class Phase(StrEnum):
    """How a person sees a status: the CLI's progress columns and the dashboard's colours.

    Every status has exactly one phase (:data:`PHASE`); members are in the order of a state's life.

    Example::

        PHASE[StateStatus.NEXT_CREATED_ERROR]  # Phase.ERRORED
    """

    WAITING = "waiting"
    RUNNING = "running"
    SUCCESS = "success"
    PRUNED = "pruned"
    ERRORED = "errored"
    RETRIED = "retried"
    CANCELLED = "cancelled"


_S = StateStatus

# -- groups ------------------------------------------------------------------------------------
# Where a run stands. PENDING, SUCCEEDED, FAILED, RETRIED and CANCELLED split the statuses between
# them: they are the `pending_count`, `success_count`, `errored_count` and `retried_count` of a run
# (PROTOCOL §3.1), and its additive `cancelled_count`.

WAITING = frozenset({_S.CREATED})
"""Waiting for a runtime to claim it, now or after a delay."""
RUNNING = frozenset({_S.QUEUED, _S.EXECUTED})
"""Held by a runtime."""
AWAITING_SIGNAL = frozenset({_S.WAITING})
"""Waiting for a signal sent to its run (``WaitForSignal``): neither claimable nor held."""
AWAITING_CHILD = frozenset({_S.AWAITING_CHILD})
"""Waiting for its child run to end (a node that names a graph): neither claimable nor held."""
PENDING = WAITING | RUNNING | AWAITING_SIGNAL | AWAITING_CHILD
"""Not over yet: a run with a state here has not finished (and retention keeps it)."""
SUCCEEDED = frozenset({_S.SUCCESS, _S.PRUNED})
"""Ended well: a pruned branch ended as its node asked, so it counts as success."""
FAILED = frozenset({_S.ERRORED, _S.NEXT_CREATED_ERROR})
"""Ended in failure: one of these makes a finished run FAILED."""
RETRIED = frozenset({_S.RETRY_CREATED})
"""Replaced by a newer attempt: counts neither for nor against the run."""
CANCELLED = frozenset({_S.CANCELLED})
"""Ended because the run was cancelled: counts neither as success nor as failure, but as itself."""
FINAL = SUCCEEDED | FAILED | RETRIED | CANCELLED
"""Over: no runtime will run it again by itself (a FAILED state may still be retried by hand)."""

# Which transition may start from, or leads to, which status.
RETRYABLE_BY_HAND = FAILED
"""A manual retry (``manual-retry``, ``exosphere state retry``, the dashboard) accepts only these."""
INITIAL = frozenset({_S.CREATED, _S.SUCCESS, _S.NEXT_CREATED_ERROR, _S.AWAITING_CHILD})
"""A new state is inserted in one of these: CREATED as a rule; AWAITING_CHILD for a node that names a
graph (its child run starts in the same transaction); a fan-out sibling already ended like
the state whose result made it (SUCCESS or NEXT_CREATED_ERROR); a unite whose inputs cannot be built
NEXT_CREATED_ERROR."""
AFTER_EXECUTED = frozenset({_S.SUCCESS, _S.NEXT_CREATED_ERROR})
"""Where a reported result (``executed``) leaves a state."""
AFTER_ERRORED = frozenset({_S.ERRORED, _S.RETRY_CREATED})
"""Where a failed attempt (``errored``, an expired lease) leaves a state: retried, or failed for good."""
CANCELLABLE = frozenset({_S.CREATED, _S.QUEUED, _S.WAITING, _S.AWAITING_CHILD})
"""What cancelling a run moves to CANCELLED: every state of it that has not ended (an AWAITING_CHILD
state's child runs are cancelled with it)."""
NEVER_STORED = frozenset({_S.EXECUTED})
"""Names of the v0 protocol that this server never writes: it records a result and creates the next
states in one transaction, so a state goes from QUEUED straight to SUCCESS."""

# What a unite waits for: while any descendant of its target is in the set, it does not fire.
UNITE_ALL_SUCCESS_WAITS_ON = PENDING | FAILED | CANCELLED | frozenset({_S.PRUNED})
"""``ALL_SUCCESS``: every descendant succeeded; a RETRY_CREATED one counts through its retry, itself a descendant."""
UNITE_ALL_DONE_WAITS_ON = PENDING
"""``ALL_DONE``: every descendant is :data:`FINAL`."""

GROUPS: Mapping[str, frozenset[StateStatus]] = MappingProxyType(
    {
        "WAITING": WAITING,
        "RUNNING": RUNNING,
        "AWAITING_SIGNAL": AWAITING_SIGNAL,
        "AWAITING_CHILD": AWAITING_CHILD,
        "PENDING": PENDING,
        "SUCCEEDED": SUCCEEDED,
        "FAILED": FAILED,
        "RETRIED": RETRIED,
        "CANCELLED": CANCELLED,
        "FINAL": FINAL,
        "CANCELLABLE": CANCELLABLE,
        "RETRYABLE_BY_HAND": RETRYABLE_BY_HAND,
        "INITIAL": INITIAL,
        "AFTER_EXECUTED": AFTER_EXECUTED,
        "AFTER_ERRORED": AFTER_ERRORED,
        "NEVER_STORED": NEVER_STORED,
        "UNITE_ALL_SUCCESS_WAITS_ON": UNITE_ALL_SUCCESS_WAITS_ON,
        "UNITE_ALL_DONE_WAITS_ON": UNITE_ALL_DONE_WAITS_ON,
    }
)
"""Every group by name, for generated copies and for tests that check each status's membership."""

PHASE: Mapping[str, Phase] = MappingProxyType(
    {
        **dict.fromkeys(WAITING, Phase.WAITING),
        **dict.fromkeys(RUNNING, Phase.RUNNING),
        **dict.fromkeys(AWAITING_SIGNAL, Phase.WAITING),
        **dict.fromkeys(AWAITING_CHILD, Phase.RUNNING),  # its work runs, in the child run
        _S.SUCCESS: Phase.SUCCESS,
        _S.PRUNED: Phase.PRUNED,
        **dict.fromkeys(FAILED, Phase.ERRORED),
        **dict.fromkeys(RETRIED, Phase.RETRIED),
        **dict.fromkeys(CANCELLED, Phase.CANCELLED),
    }
)
"""The phase of each status.

Keyed by plain strings too: ``PHASE.get(status)`` is None for a status a newer server invented, which a
client shows without a phase rather than failing."""

# -- moves -------------------------------------------------------------------------------------

ALLOWED_MOVES: Mapping[StateStatus, frozenset[StateStatus]] = MappingProxyType(
    {
        _S.CREATED: frozenset({_S.QUEUED, _S.CANCELLED}),  # claimed; its run cancelled
        _S.QUEUED: frozenset(
            {
                _S.CREATED,  # released, or offered again later (ReQueueAfter)
                *AFTER_EXECUTED,
                _S.PRUNED,
                *AFTER_ERRORED,  # also an expired lease or a time-out
                _S.CANCELLED,  # its run cancelled while a runtime held it
                _S.WAITING,  # its node raised WaitForSignal
            }
        ),
        _S.EXECUTED: frozenset(),
        _S.ERRORED: frozenset({_S.RETRY_CREATED}),  # retried by hand
        _S.NEXT_CREATED_ERROR: frozenset({_S.RETRY_CREATED}),  # retried by hand
        _S.SUCCESS: frozenset(),
        _S.PRUNED: frozenset(),
        _S.RETRY_CREATED: frozenset(),
        _S.CANCELLED: frozenset(),
        _S.WAITING: frozenset(
            {
                _S.CREATED,  # its signal arrived: it runs again
                *AFTER_ERRORED,  # its wait timed out
                _S.CANCELLED,  # its run cancelled while it waited
            }
        ),
        _S.AWAITING_CHILD: frozenset(
            {
                *AFTER_EXECUTED,  # its child run succeeded: its outputs recorded, the next states made
                *AFTER_ERRORED,  # its child run failed, was cancelled, or could not start
                _S.CANCELLED,  # its run cancelled (its child runs with it)
            }
        ),
    }
)
"""The statuses each status may move to, taken from what the engine does (``engine/transitions.py``).

The server's storage checks every status it writes against this (:func:`check_move`), so a
transition that breaks it fails loudly in the tests instead of corrupting a run.
"""


# The same table keyed by plain strings: a lookup on the hot path of every completion, without a
# conversion to StateStatus (which would cost a microsecond, and raise for unknown names).
_MOVES_BY_NAME: Mapping[str, frozenset[StateStatus]] = {str(s): moves for s, moves in ALLOWED_MOVES.items()}


class IllegalMoveError(ValueError):
    """A status change that :data:`ALLOWED_MOVES` does not allow: a programming error, not bad input."""


def can_move(source: str, target: str) -> bool:
    """Whether a state in ``source`` may move to ``target``; False for a name that is no status.

    Example::

        can_move(StateStatus.CREATED, StateStatus.QUEUED)  # True
        can_move("PRUNED", "CREATED")                       # False
    """
    moves = _MOVES_BY_NAME.get(source)
    return moves is not None and target in moves


def check_move(source: str, target: str) -> None:
    """Raise :class:`IllegalMoveError` unless ``source`` may move to ``target``.

    Example::

        check_move(StateStatus.QUEUED, StateStatus.PRUNED)  # passes
        check_move("SUCCESS", "QUEUED")                      # IllegalMoveError
    """
    if not can_move(source, target):
        raise IllegalMoveError(f"A state cannot move from {source} to {target} (exospherehost.statuses.ALLOWED_MOVES)")


def check_initial(status: str) -> None:
    """Raise :class:`IllegalMoveError` unless a new state may be inserted in ``status`` (:data:`INITIAL`).

    Example::

        check_initial(StateStatus.CREATED)  # passes
        check_initial("QUEUED")             # IllegalMoveError
    """
    if status not in INITIAL:
        raise IllegalMoveError(f"A state cannot be created {status} (exospherehost.statuses.INITIAL)")


def run_status(*, pending: int, failed: int, total: int, cancelled: int = 0) -> RunStatus:
    """A run's status from how many of its states are :data:`PENDING`, :data:`FAILED`,
    :data:`CANCELLED`, and in all.

    Example::

        run_status(pending=2, failed=1, total=9)  # RunStatus.PENDING
        run_status(pending=0, failed=0, total=9)  # RunStatus.SUCCESS
        run_status(pending=0, failed=0, total=0)  # RunStatus.FAILED: a run without states did nothing
        run_status(pending=0, failed=1, total=9, cancelled=3)  # RunStatus.CANCELLED
    """
    if pending > 0:
        return RunStatus.PENDING
    if cancelled > 0:
        return RunStatus.CANCELLED
    return RunStatus.FAILED if failed > 0 or total == 0 else RunStatus.SUCCESS
