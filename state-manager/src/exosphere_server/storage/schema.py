"""Tables of the state manager, as SQLAlchemy Core metadata shared by both dialects.

Times are integers in epoch milliseconds, JSON columns hold plain dicts and lists. Migrations in
`migrations/versions/` create and alter these tables; this module is what the queries are written
against.
"""

from __future__ import annotations

import sqlalchemy as sa
from exospherehost.contract import PRIORITY_POINT_MS
from exospherehost.statuses import StateStatus

metadata = sa.MetaData()


def status_is(status: StateStatus, table: str | None = None) -> str:
    """SQL text that tests a state's status literally, as the partial indexes below and the queries that
    use them must (a bound parameter cannot prove `status = 'CREATED'` to the planner)."""
    column = f"{table}.status" if table else "status"
    return f"{column} = '{status.value}'"


READY = status_is(StateStatus.CREATED)  # claimable, now or once enqueue_after has passed
# Where a ready state stands in its node's queue: its ready time less one second per point of priority
# (`contract.PRIORITY_POINT_MS`). Claims take the lowest first, so priority goes first and waiting
# ages a state past higher priorities. The same text in the index and in the claim, literal, so that
# both databases match the claim's ORDER BY to the index.
CLAIM_ORDER = f"enqueue_after - priority * {PRIORITY_POINT_MS}"
LEASED = status_is(StateStatus.QUEUED)  # held by a runtime under a lease
WAITING_FOR_SIGNAL = status_is(StateStatus.WAITING)  # waiting for a signal sent to its run

graphs = sa.Table(
    "graphs",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("nodes", sa.JSON, nullable=False),
    sa.Column("secrets", sa.JSON, nullable=False),  # name -> AES-GCM ciphertext
    sa.Column("retry_policy", sa.JSON, nullable=False),
    sa.Column("store_config", sa.JSON, nullable=False),
    sa.Column("triggers", sa.JSON, nullable=False),
    sa.Column("validation_status", sa.String, nullable=False),
    sa.Column("validation_errors", sa.JSON, nullable=False),
    sa.Column("validation_warnings", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("timeout_seconds", sa.Float, nullable=True),
    sa.Column("deadline_seconds", sa.Float, nullable=True),
    sa.Column("priority", sa.Integer, nullable=True),  # default priority of runs
    sa.Column("budget", sa.JSON, nullable=True),  # default budget of runs (`contract.Budget`)
)

# Runs pin the version they were triggered with, so re-upserting a graph never changes a run in flight.
graph_versions = sa.Table(
    "graph_versions",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("nodes", sa.JSON, nullable=False),
    sa.Column("retry_policy", sa.JSON, nullable=False),
    sa.Column("store_config", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("timeout_seconds", sa.Float, nullable=True),
    sa.Column("deadline_seconds", sa.Float, nullable=True),
    sa.Column("priority", sa.Integer, nullable=True),
    sa.Column("budget", sa.JSON, nullable=True),
)

registered_nodes = sa.Table(
    "registered_nodes",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("runtime_name", sa.String, nullable=False),
    sa.Column("inputs_schema", sa.JSON, nullable=False),
    sa.Column("outputs_schema", sa.JSON, nullable=False),
    sa.Column("secrets", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("namespace", sa.String, nullable=False),
    sa.Column("graph_name", sa.String, nullable=False),
    sa.Column("graph_version", sa.Integer, nullable=False),
    sa.Column("store", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("budget", sa.JSON, nullable=True),  # `contract.Budget`; None: no budget
    sa.Column("parent_run_id", sa.String, nullable=True),
    sa.Column("parent_state_id", sa.String(24), nullable=True),
    sa.Index("ix_runs_namespace_created", "namespace", "created_at"),
    sa.Index("ix_runs_parent_run", "parent_run_id"),
    sa.Index("ix_runs_parent_state", "parent_state_id"),
)

states = sa.Table(
    "states",
    metadata,
    sa.Column("id", sa.String(24), primary_key=True),
    sa.Column("namespace", sa.String, nullable=False),
    sa.Column("node_name", sa.String, nullable=False),
    sa.Column("identifier", sa.String, nullable=False),
    sa.Column("graph_name", sa.String, nullable=False),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    # identifier -> state id, in lineage order, of the ancestors a state keeps: the unite targets and,
    # last, its direct parent (rows written before migration 0006 keep the whole ancestry). The whole
    # lineage is read, when someone asks for it, by following `parent_id` (`Tx.with_full_lineage`).
    sa.Column("parents", sa.JSON, nullable=False),
    sa.Column("parent_id", sa.String(24), nullable=True),
    # What placeholders further on read of the ancestors' outputs (engine/carried_outputs.py).
    sa.Column("carried", sa.JSON, nullable=False, server_default=sa.text("'{}'")),
    sa.Column("does_unites", sa.Boolean, nullable=False),
    sa.Column("fingerprint", sa.String, nullable=True, unique=True),  # only unite states carry one
    sa.Column("enqueue_after", sa.BigInteger, nullable=False),
    sa.Column("retry_count", sa.Integer, nullable=False),
    sa.Column("fanout_id", sa.String, nullable=False),
    sa.Column("manual_retry_fanout_id", sa.String, nullable=False),
    sa.Column("lease_id", sa.String, nullable=True),
    sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
    sa.Column("lease_expired", sa.Boolean, nullable=False),
    sa.Column("claims", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("started_at", sa.BigInteger, nullable=True),
    sa.Column("finished_at", sa.BigInteger, nullable=True),
    # Bumped by every write that moves the state (insert, claim, result, retry...): the sum over a
    # run's states only grows, and grows with each change, so it numbers the run's change events.
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    # The runtime that made the latest claim (its name and the instance it announced), and the
    # traceback the runtime sent with an error: where an attempt ran and why it failed.
    sa.Column("runtime_name", sa.String, nullable=True),
    sa.Column("runtime_instance", sa.String, nullable=True),
    sa.Column("traceback", sa.Text, nullable=True),
    sa.Column("timeout_ms", sa.BigInteger, nullable=True),
    # `WaitForSignal`: the signal a WAITING state waits for and when its wait times out (None: never);
    # then the payload of the signal that woke it, handed to its next claim.
    sa.Column("waiting_for", sa.String, nullable=True),
    sa.Column("wait_timeout_at", sa.BigInteger, nullable=True),
    sa.Column("signal", sa.JSON, nullable=True),
    # What the attempt reported using (tokens, requests, cost) with its result; also added to `run_counts`.
    sa.Column("usage", sa.JSON, nullable=True),
    # Its run's priority, kept on the state so that a claim orders by one index (`CLAIM_ORDER`).
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    # The buckets of named limits (and of its node's own `concurrency`) the state is charged to at claim,
    # resolved when it was created: [{"name", "key", "tokens", "concurrency"}]. NULL for the states of
    # nodes without limits: only those take the plain claim (`storage/limit_claims.py`).
    sa.Column("limits", sa.JSON(none_as_null=True), nullable=True),
    # The one entry of `parents` under which `descendant_counts` keeps no count of this state: an
    # ancestor of a node no unite of the run's graph targets, so no unite ever asks for its
    # descendants (a child's direct parent, or a unite state's target's parent). NULL: counted under
    # every entry, as every state written before migration 0017.
    sa.Column("uncounted_parent", sa.String(24), nullable=True),
    sa.UniqueConstraint(
        "node_name",
        "namespace",
        "graph_name",
        "identifier",
        "run_id",
        "retry_count",
        "fanout_id",
        name="uq_states_attempt",
    ),
    # Finished work stays out of the hot indexes: claims and lease expiry only see live states.
    sa.Index(
        "ix_states_claim_order",
        "namespace",
        "node_name",
        sa.text(f"({CLAIM_ORDER})"),
        sqlite_where=sa.text(READY),
        postgresql_where=sa.text(READY),
    ),
    sa.Index(
        "ix_states_due",
        "enqueue_after",
        sqlite_where=sa.text(READY),
        postgresql_where=sa.text(READY),
    ),
    sa.Index(
        "ix_states_lease",
        "lease_expires_at",
        sqlite_where=sa.text(LEASED),
        postgresql_where=sa.text(LEASED),
    ),
    sa.Index(
        "ix_states_wait_timeout",
        "wait_timeout_at",
        sqlite_where=sa.text(WAITING_FOR_SIGNAL),
        postgresql_where=sa.text(WAITING_FOR_SIGNAL),
    ),
    sa.Index("ix_states_run", "run_id", "created_at"),
)

# Idempotency keys of triggers, each kept until `expires_at`: the primary key makes a second trigger
# with the same key (on any replica) find the first one's run instead of starting another.
trigger_keys = sa.Table(
    "trigger_keys",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("graph_name", sa.String, primary_key=True),
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_trigger_keys_expiry", "expires_at"),
)

# One row per (state, ancestor kept in its `parents`): the descendants of a unite target, and the
# children of a state, by index; and a state's ancestors, by `ix_state_ancestors_state` (a PostgreSQL
# claim counts its states' changes for their ancestors by it).
state_ancestors = sa.Table(
    "state_ancestors",
    metadata,
    sa.Column("ancestor_id", sa.String(24), primary_key=True),
    sa.Column("state_id", sa.String(24), primary_key=True),
    sa.Index("ix_state_ancestors_state", "state_id"),
)

# How many states of a run are in each (node identifier, status), kept up to date by every write that
# moves a state, in the same transaction (`Tx.count_change`): a run's progress, summary and version
# are read from a few rows, never by counting its states. A transaction adds its changes to one of
# COUNT_SHARDS rows per key, chosen at random, so that concurrent completions of one run on
# PostgreSQL seldom wait on the same row; readers sum the shards. Shard 0 is PostgreSQL's claims' own
# (one statement, see `postgres.CLAIM_AND_COUNT`), so that a claim and a transaction never wait on each
# other's count rows in a cycle.
COUNT_SHARDS = 8
CLAIM_SHARD = 0
run_counts = sa.Table(
    "run_counts",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("identifier", sa.String, primary_key=True),
    sa.Column("status", sa.String, primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("node_name", sa.String, nullable=False),
    sa.Column("states", sa.Integer, nullable=False),  # may be 0: the row still dates the identifier
    # Revisions written (see `states.revision`): their sum over a run is the run's version.
    sa.Column("revisions", sa.Integer, nullable=False),
    # When the first state counted here was created: a run's nodes are listed in order of first appearance.
    sa.Column("first_created", sa.BigInteger, nullable=False),
    # The usage the attempts counted here reported, added by the transaction that recorded their result:
    # a run's and a node's usage are sums over these rows, never over states.
    sa.Column("input_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("requests", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
)

# How many descendants of a state (the states whose `parents` keep it: see `state_ancestors`) are in each
# status, kept like `run_counts`: a unite asks whether everything below its target is done in a few
# rows, instead of reading every descendant while it holds the target's lock. Only unite targets are
# ever asked, so a state is counted under no other ancestor (`states.uncounted_parent`): a graph
# without unites, and the branches below a node no unite waits on, write no rows here.
descendant_counts = sa.Table(
    "descendant_counts",
    metadata,
    sa.Column("ancestor_id", sa.String(24), primary_key=True),
    sa.Column("status", sa.String, primary_key=True),
    sa.Column("shard", sa.Integer, primary_key=True),
    sa.Column("states", sa.Integer, nullable=False),
)

# A cancelled run's reason and how many states the cancel ended; the primary key makes a cancel single
# when two arrive at once (the second reads the first's answer).
run_cancellations = sa.Table(
    "run_cancellations",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("cancelled_states", sa.Integer, nullable=False),
    sa.Column("cancelled_at", sa.BigInteger, nullable=False),
)

# The last signal sent to a run under each name: it wakes the states waiting for it then, and every
# wait for that name that starts later is answered with it at once.
run_signals = sa.Table(
    "run_signals",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("sent_at", sa.BigInteger, nullable=False),
)

# Runs with a deadline still to check: the scheduler reads the earliest by index and deletes each row
# once its deadline has been dealt with, so finished runs never stay in the index.
run_deadlines = sa.Table(
    "run_deadlines",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("deadline_at", sa.BigInteger, nullable=False),
    sa.Index("ix_run_deadlines_due", "deadline_at"),
)

# When a runtime last asked for work of a node: a node nobody asks for is "not served". Written at
# most every few seconds per node and replica (`engine/serving.py`).
node_polls = sa.Table(
    "node_polls",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("node_name", sa.String, primary_key=True),
    sa.Column("polled_at", sa.BigInteger, nullable=False),
)

cron_schedules = sa.Table(
    "cron_schedules",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("graph_name", sa.String, primary_key=True),
    sa.Column("expression", sa.String, primary_key=True),
    sa.Column("trigger", sa.JSON, nullable=False),
    sa.Column("next_fire_at", sa.BigInteger, nullable=False),
    sa.Index("ix_cron_next", "next_fire_at"),
)

# Which graphs use which registered node: a registration re-validates only these graphs, by index,
# instead of reading every stored graph.
graph_node_refs = sa.Table(
    "graph_node_refs",
    metadata,
    sa.Column("node_namespace", sa.String, primary_key=True),
    sa.Column("node_name", sa.String, primary_key=True),
    sa.Column("graph_namespace", sa.String, primary_key=True),
    sa.Column("graph_name", sa.String, primary_key=True),
)

# Facts about the installation itself, such as the check value of the secrets key (never the key).
server_settings = sa.Table(
    "server_settings",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.String, nullable=False),
)

# Dashboard sessions ended by a logout, kept until they would have expired anyway, so that every
# replica refuses them.
revoked_sessions = sa.Table(
    "revoked_sessions",
    metadata,
    sa.Column("token_id", sa.String, primary_key=True),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Index("ix_revoked_sessions_expiry", "expires_at"),
)

# API keys with a role and a namespace scope (`None`: every namespace). Only the SHA-256 of the secret
# is kept: the secret is 256 random bits, so a fast hash is enough and a lookup is one index probe.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("namespace", sa.String, nullable=True),
    sa.Column("secret_sha256", sa.String, nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("revoked_at", sa.BigInteger, nullable=True),
)

# Who did what: one row per admin or operator action that succeeded, newest by id.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("key_id", sa.String, nullable=False),
    sa.Column("key_name", sa.String, nullable=False),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("namespace", sa.String, nullable=True),
    sa.Column("target", sa.String, nullable=False),
)

# Named limits of a namespace (`PUT /v0/namespace/{ns}/limits/{name}`): what a claim may hand out.
# `paused_until`: a `RateLimitedSignal` without a key paused every bucket of the limit until then.
limits = sa.Table(
    "limits",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("concurrency", sa.Integer, nullable=True),
    sa.Column("requests_per_minute", sa.Integer, nullable=True),
    sa.Column("tokens_per_minute", sa.Integer, nullable=True),
    sa.Column("paused_until", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# One token bucket per (limit, key): what is left of the per-minute budgets as of `refilled_at`
# (negative: owed after a charge bigger than the burst, or after usage above the estimate). A claim
# locks the rows it charges (FOR UPDATE), which is what makes limits exact across replicas.
limit_buckets = sa.Table(
    "limit_buckets",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("key", sa.String, primary_key=True),  # "" for a limit not split by key
    sa.Column("requests", sa.Float, nullable=False),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("refilled_at", sa.BigInteger, nullable=False),
    sa.Column("paused_until", sa.BigInteger, nullable=False),
)

# One row per (claimed state, bucket with a concurrency cap) while the state is claimed: a claim counts
# a bucket's rows (never more than its cap) under the bucket's lock; a state leaving QUEUED deletes its
# own rows (`Tx._release_holds`), which takes no shared lock.
limit_holds = sa.Table(
    "limit_holds",
    metadata,
    sa.Column("state_id", sa.String(24), primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("namespace", sa.String, nullable=False),
    sa.Index("ix_limit_holds_bucket", "namespace", "name", "key"),
)

# Tokens to take from (positive) or give back to (negative) a bucket: a result's actual usage against the
# estimate charged at claim. Written without touching the bucket row (no lock, so a completion never
# waits on claims or deadlocks with them); the next claim of the bucket applies and deletes the rows
# under the bucket's lock (`limit_queries.take_corrections`), each exactly once.
limit_corrections = sa.Table(
    "limit_corrections",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("namespace", sa.String, nullable=False),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("key", sa.String, nullable=False),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Index("ix_limit_corrections_bucket", "namespace", "name", "key"),
)

# Nodes some graph gives limits or a concurrency: claims of these nodes also look for limited states.
# Rows are never removed (a stale row costs a claim one more query, never a wrong answer).
limited_nodes = sa.Table(
    "limited_nodes",
    metadata,
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("node_name", sa.String, primary_key=True),
)

# Live streams out of running nodes: text chunks an attempt (`claims` of its state when it was
# written) streamed, numbered from 0 by the runtime, which resends a batch whose answer it lost: the
# primary key makes that resend harmless. Read by state and attempt from an offset, in key order.
stream_chunks = sa.Table(
    "stream_chunks",
    metadata,
    sa.Column("state_id", sa.String, primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("written_at", sa.BigInteger, nullable=False),
    # On SQLite the primary key is the table (no rowid table beside its index): half the pages per write.
    sqlite_with_rowid=False,
)

# Input and output values above the inline threshold, by run and SHA-256 of their text, on PostgreSQL
# (SQLite keeps them as files beside the database): state rows hold references (storage/payloads.py).
payloads = sa.Table(
    "payloads",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)
