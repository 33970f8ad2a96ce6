"""Plain records that storage reads and writes; the engine works with these, never with rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exospherehost import statuses


@dataclass
class StateRecord:
    id: str
    namespace: str
    node_name: str
    identifier: str
    graph_name: str
    run_id: str
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    parents: dict[str, str]
    enqueue_after: int
    created_at: int
    updated_at: int
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    does_unites: bool = False
    fingerprint: str | None = None
    retry_count: int = 0
    fanout_id: str = ""
    manual_retry_fanout_id: str = ""
    lease_id: str | None = None
    lease_expires_at: int | None = None
    lease_expired: bool = False
    claims: int = 0
    started_at: int | None = None
    finished_at: int | None = None
    # The state it was made from (a unite state: its target); None for a root state, and for states
    # written before migration 0006, whose `parents` hold their whole ancestry.
    parent_id: str | None = None
    # Outputs of ancestors that placeholders further on read: identifier -> field -> value.
    carried: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Milliseconds from claim to result before the attempt fails as timed out; None: no time-out.
    timeout_ms: int | None = None
    runtime_name: str | None = None
    runtime_instance: str | None = None
    traceback: str | None = None
    # `WaitForSignal`: the signal it waits for while WAITING, and when that wait times out (None: never).
    waiting_for: str | None = None
    wait_timeout_at: int | None = None
    # The payload of the signal that woke it, handed to its next claim; None until one did.
    signal: dict[str, str] | None = None
    # What the attempt reported using with its result (`contract.Usage`, without its null fields).
    usage: dict[str, Any] | None = None
    priority: int = 0  # its run's
    # The limit buckets it is charged to at claim (`schema.states.limits`); None: no limits.
    limits: list[dict[str, Any]] | None = None
    # The entry of `parents` not counted in `descendant_counts` (no unite targets its node); None: all are.
    uncounted_parent: str | None = None


@dataclass
class AttemptRecord:
    """One claimed state as a timeline draws it: which node, when it ran, how it ended, where."""

    id: str
    identifier: str
    node_name: str
    status: str
    retry_count: int
    started_at: int
    finished_at: int | None
    runtime_name: str | None
    error: str | None


@dataclass
class GraphRecord:
    namespace: str
    name: str
    version: int
    nodes: list[dict[str, Any]]
    secrets: dict[str, str]
    retry_policy: dict[str, Any]
    store_config: dict[str, Any]
    triggers: list[dict[str, Any]]
    validation_status: str
    validation_errors: list[str]
    validation_warnings: list[str]
    created_at: int
    updated_at: int
    timeout_seconds: float | None = None  # default time-out of the graph's nodes
    deadline_seconds: float | None = None  # default deadline of the graph's runs
    priority: int | None = None  # default priority of the graph's runs
    budget: dict[str, Any] | None = None  # default budget of the graph's runs (`contract.Budget`)


@dataclass(frozen=True)
class GraphHead:
    """What a trigger reads of a graph: its version and validation, not its nodes (they come pinned)."""

    version: int
    validation_status: str
    validation_errors: list[str]


@dataclass
class GraphVersionRecord:
    namespace: str
    name: str
    version: int
    nodes: list[dict[str, Any]]
    retry_policy: dict[str, Any]
    store_config: dict[str, Any]
    created_at: int
    timeout_seconds: float | None = None
    deadline_seconds: float | None = None
    priority: int | None = None
    budget: dict[str, Any] | None = None


@dataclass
class RegisteredNodeRecord:
    namespace: str
    name: str
    runtime_name: str
    inputs_schema: dict[str, Any]
    outputs_schema: dict[str, Any]
    secrets: list[str]
    created_at: int
    updated_at: int


@dataclass
class RunRecord:
    run_id: str
    namespace: str
    graph_name: str
    graph_version: int
    store: dict[str, str]
    created_at: int
    priority: int = 0  # claims order by it (`schema.CLAIM_ORDER`)
    budget: dict[str, Any] | None = None  # `contract.Budget` without its nulls; None: no budget
    # A child run (its parent's node names a graph): the run and the state it runs for.
    parent_run_id: str | None = None
    parent_state_id: str | None = None


@dataclass
class UsageTotals:
    """Usage added up (over a node's or a run's attempts): what `contract.Usage` reports, summed."""

    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    cost_usd: float = 0.0

    def add(self, other: UsageTotals) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.cost_usd += other.cost_usd

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def anything(self) -> bool:
        """Whether anything was used at all."""
        return bool(self.input_tokens or self.output_tokens or self.requests or self.cost_usd)

    def view(self) -> dict[str, int | float]:
        # Sums of floats drift in the last digits (0.1 + 0.2); a cent's millionth is precision enough.
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "requests": self.requests,
            "cost_usd": round(self.cost_usd, 9),
        }


@dataclass
class RunCounts:
    """States of one run grouped as the runs listing reports them (PROTOCOL §3.1).

    The groups are `exospherehost.statuses`' PENDING, SUCCEEDED, FAILED, RETRIED and CANCELLED.
    """

    success: int = 0
    pending: int = 0
    errored: int = 0
    retried: int = 0
    last_finished_at: int | None = None  # when the latest of these states reached a final status
    cancelled: int = 0
    usage: UsageTotals = field(default_factory=UsageTotals)  # what the run's attempts reported using

    def add(self, status: str, count: int, last_finished_at: int | None = None) -> None:
        """Count `count` states of `status` in their group; a status in none of them is a programming error."""
        if last_finished_at is not None:
            self.last_finished_at = max(last_finished_at, self.last_finished_at or last_finished_at)
        if status in statuses.PENDING:
            self.pending += count
        elif status in statuses.SUCCEEDED:
            self.success += count
        elif status in statuses.FAILED:
            self.errored += count
        elif status in statuses.RETRIED:
            self.retried += count
        elif status in statuses.CANCELLED:
            self.cancelled += count
        else:
            raise ValueError(f"State status {status!r} is in no run count group (exospherehost.statuses)")

    @property
    def total(self) -> int:
        return self.success + self.pending + self.errored + self.retried + self.cancelled

    @property
    def status(self) -> statuses.RunStatus:
        """The run's status these counts give (`exospherehost.statuses.run_status`)."""
        return statuses.run_status(
            pending=self.pending, failed=self.errored, total=self.total, cancelled=self.cancelled
        )


@dataclass
class RunCancellationRecord:
    """How a run was cancelled: kept apart from the run, which never changes after its trigger."""

    run_id: str
    reason: str | None
    cancelled_states: int
    cancelled_at: int


@dataclass
class CronScheduleRecord:
    namespace: str
    graph_name: str
    expression: str
    trigger: dict[str, Any]
    next_fire_at: int


@dataclass
class ApiKeyRecord:
    """A scoped API key; `namespace` None means every namespace. The secret itself is never stored."""

    id: str
    name: str
    role: str
    namespace: str | None
    secret_sha256: str
    created_at: int
    revoked_at: int | None = None


@dataclass
class AuditRecord:
    id: int
    at: int
    key_id: str
    key_name: str
    role: str
    action: str
    namespace: str | None
    target: str


@dataclass
class RunSignalRecord:
    """The last signal sent to a run under one name."""

    run_id: str
    name: str
    payload: dict[str, str]
    sent_at: int


@dataclass
class LimitRecord:
    """A named limit of a namespace: any of a concurrency cap and per-minute request and token budgets."""

    namespace: str
    name: str
    concurrency: int | None
    requests_per_minute: int | None
    tokens_per_minute: int | None
    paused_until: int
    created_at: int
    updated_at: int


@dataclass
class BucketRecord:
    """One bucket of a limit (one per key): the budgets left as of `refilled_at`, and its pause."""

    namespace: str
    name: str
    key: str
    requests: float
    tokens: float
    refilled_at: int
    paused_until: int


@dataclass
class StreamChunkRecord:
    """One piece of text an attempt streamed (`BaseNode.stream`): attempt `attempt` (the state's claim
    count) of state `state_id`, at `position` from 0."""

    state_id: str
    attempt: int
    position: int
    text: str
    written_at: int
