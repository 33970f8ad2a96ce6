"""The storage interface: named queries over SQLAlchemy Core, one transaction object per unit of work.

Every query the server runs lives here, with a name that says what it does. The two dialects differ
only in what `SqliteStorage` and `PostgresStorage` override: how a write transaction is serialised,
how a row is locked, and how other replicas learn that work became ready.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import operator
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from exospherehost.contract import PRIORITY_POINT_MS
from exospherehost.statuses import (
    CANCELLABLE,
    CANCELLED,
    FAILED,
    PENDING,
    RunStatus,
    StateStatus,
    check_initial,
    check_move,
)

from exosphere_server.clock import now_ms
from exosphere_server.jsontext import dumps_in_pieces
from exosphere_server.random_ids import random_hex
from exosphere_server.storage import limit_queries, payloads, schema
from exosphere_server.storage.limit_buckets import NODE_PREFIX, charges_of, decide, refill
from exosphere_server.storage.records import (
    ApiKeyRecord,
    AttemptRecord,
    AuditRecord,
    CronScheduleRecord,
    GraphHead,
    GraphRecord,
    GraphVersionRecord,
    LimitRecord,
    RegisteredNodeRecord,
    RunCancellationRecord,
    RunCounts,
    RunRecord,
    RunSignalRecord,
    StateRecord,
    StreamChunkRecord,
    UsageTotals,
)

ReadyKey = tuple[str, str]  # (namespace, node name) of a state that can be claimed now
Claimant = tuple[str | None, str | None]  # (runtime name, runtime instance) that claims, as it announced them
R = TypeVar("R")
# A limited claim looks at the first `2 * limit + LIMITED_WINDOW` ready limited states: enough to pass
# over states of full buckets to those of buckets with room, bounded so that a claim stays cheap.
LIMITED_WINDOW = 32
USAGE_FIELDS = ("input_tokens", "output_tokens", "requests", "cost_usd")  # `contract.Usage`, as `run_counts` adds it up


def status_values(group: Iterable[str]) -> list[str]:
    """A group of statuses as plain strings in a fixed order, for `IN (...)`."""
    return sorted(str(status) for status in group)


def new_id() -> str:
    """A 24-hex id shaped like the original's ObjectIds: seconds first, so ids sort by creation."""
    return f"{int(time.time()):08x}{random_hex(8)}"


# Hot statements are built once: SQLAlchemy then reuses their compiled form and cache key, which
# matters on a path taken several times per hop. Status tests are literal SQL so that the planner can
# match them to the partial indexes (a bound parameter cannot prove `status = 'CREATED'`).
_S = schema.states
IS_CREATED = sa.text(schema.status_is(StateStatus.CREATED, "states"))
IS_QUEUED = sa.text(schema.status_is(StateStatus.QUEUED, "states"))
IS_WAITING = sa.text(schema.status_is(StateStatus.WAITING, "states"))
GET_STATE = sa.select(_S).where(_S.c.id == sa.bindparam("state_id"))
GET_STATE_FOR_UPDATE = GET_STATE.with_for_update()
GET_RUN = sa.select(schema.runs).where(schema.runs.c.run_id == sa.bindparam("run_id"))
GET_RUNS = sa.select(schema.runs).where(schema.runs.c.run_id.in_(sa.bindparam("run_ids", expanding=True)))
INSERT_RUN = sa.insert(schema.runs)
LOCK_STATES = sa.select(_S).where(_S.c.id.in_(sa.bindparam("ids", expanding=True))).order_by(_S.c.id).with_for_update()
_G = schema.graphs
GET_GRAPH_HEAD = sa.select(_G.c.version, _G.c.validation_status, _G.c.validation_errors).where(
    _G.c.namespace == sa.bindparam("namespace"), _G.c.name == sa.bindparam("name")
)
_V = schema.graph_versions
GET_GRAPH_VERSION = sa.select(_V).where(
    _V.c.namespace == sa.bindparam("namespace"),
    _V.c.name == sa.bindparam("name"),
    _V.c.version == sa.bindparam("version"),
)
# Built with a parameter per column, named as the column, for `Tx._write_plain`.
INSERT_STATES = sa.insert(_S).values({name: sa.bindparam(name) for name in (f.name for f in fields(StateRecord))})
_COUNT_COLUMNS = (
    "run_id",
    "identifier",
    "status",
    "shard",
    "node_name",
    "states",
    "revisions",
    "first_created",
    *USAGE_FIELDS,
)
_DESCENDANT_COLUMNS = ("ancestor_id", "status", "shard", "states")
_FINISH_COLUMNS = ("b_id", "b_status", "b_outputs", "b_error", "b_usage", "b_finished_at")
INSERT_ANCESTORS = sa.insert(schema.state_ancestors).values(
    ancestor_id=sa.bindparam("ancestor_id"), state_id=sa.bindparam("state_id")
)
FINISH_STATE = (
    sa.update(_S)
    .where(_S.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        outputs=sa.bindparam("b_outputs", type_=sa.JSON),
        error=sa.bindparam("b_error"),
        usage=sa.bindparam("b_usage", type_=sa.JSON),
        finished_at=sa.bindparam("b_finished_at"),
        updated_at=sa.bindparam("b_finished_at"),
        revision=_S.c.revision + 1,
    )
)
# Built once and given their values as parameters: `.values(...)` per call builds a new statement and
# its cache key each time (a tenth of a trigger's CPU went to the audit entry's).
INSERT_AUDIT_ENTRY = sa.insert(schema.audit_log)
_T = schema.trigger_keys
# (An UPDATE's parameters may not take its columns' names.)
_SAME_TRIGGER_KEY = (
    _T.c.namespace == sa.bindparam("key_namespace"),
    _T.c.graph_name == sa.bindparam("key_graph_name"),
    _T.c.key == sa.bindparam("key_text"),
)
RENEW_TRIGGER_KEY = (
    sa.update(_T)
    .where(*_SAME_TRIGGER_KEY, _T.c.expires_at <= sa.bindparam("now"))
    .values(run_id=sa.bindparam("new_run_id"), expires_at=sa.bindparam("new_expires_at"))
)
TRIGGER_KEY_OWNER = sa.select(_T.c.run_id).where(*_SAME_TRIGGER_KEY)
_READY_TO_CLAIM = (
    IS_CREATED,
    _S.c.namespace == sa.bindparam("b_namespace"),
    _S.c.node_name.in_(sa.bindparam("b_node_names", expanding=True)),
    _S.c.enqueue_after <= sa.bindparam("b_now"),
)
_CLAIM_VALUES = dict(
    status=StateStatus.QUEUED.value,
    lease_id=sa.bindparam("b_lease_id"),
    # A node with a time-out shorter than the lease: the lease ends at the time-out, so lease
    # expiry (one index, one scheduler duty) also ends attempts that ran too long.
    lease_expires_at=sa.case(
        (_S.c.timeout_ms < sa.bindparam("b_lease_ms"), sa.bindparam("b_now") + _S.c.timeout_ms),
        else_=sa.bindparam("b_lease_expires_at"),
    ),
    lease_expired=False,
    claims=_S.c.claims + 1,
    started_at=sa.bindparam("b_now"),
    updated_at=sa.bindparam("b_now"),
    revision=_S.c.revision + 1,
    runtime_name=sa.bindparam("b_runtime_name"),
    runtime_instance=sa.bindparam("b_runtime_instance"),
)
# States with limits are claimed only by `claim_limited_states`, which checks their buckets first.
CLAIM_STATES = (
    sa.update(_S)
    .where(
        _S.c.id.in_(
            sa.select(_S.c.id)
            .where(*_READY_TO_CLAIM, _S.c.limits.is_(None))
            .order_by(sa.text(schema.CLAIM_ORDER))
            .limit(sa.bindparam("b_limit"))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(**_CLAIM_VALUES)
    .returning(*_S.c)
)
# The first ready limited states in order, locked; `claim_limited_states` picks those whose buckets have room.
LIMITED_READY = (
    sa.select(_S)
    .where(*_READY_TO_CLAIM, _S.c.limits.is_not(None))
    .order_by(sa.text(schema.CLAIM_ORDER), _S.c.id)
    .limit(sa.bindparam("b_window"))
    .with_for_update(skip_locked=True)
)
CLAIM_CHOSEN = (
    sa.update(_S)
    .where(_S.c.id.in_(sa.bindparam("b_ids", expanding=True)), IS_CREATED)
    .values(**_CLAIM_VALUES)
    .returning(*_S.c)
)
check_move(StateStatus.CREATED, StateStatus.QUEUED)  # the move CLAIM_STATES makes, checked once here
_D = schema.descendant_counts
DESCENDANTS_IN = sa.select(sa.func.sum(_D.c.states)).where(
    _D.c.ancestor_id == sa.bindparam("ancestor_id"), _D.c.status.in_(sa.bindparam("statuses", expanding=True))
)


_USAGE_SUMS = tuple(sa.func.sum(schema.run_counts.c[name]) for name in USAGE_FIELDS)


def _usage_totals(sums: Sequence[Any]) -> UsageTotals:
    """`UsageTotals` from the `_USAGE_SUMS` columns of a row (NULL on no rows is nothing used)."""
    tokens_in, tokens_out, requests, cost = (value or 0 for value in sums)
    return UsageTotals(int(tokens_in), int(tokens_out), int(requests), float(cost))


def claim_order(state: StateRecord) -> int:
    """`schema.CLAIM_ORDER` of a state: claims hand out the lowest first."""
    return state.enqueue_after - state.priority * PRIORITY_POINT_MS


class EncodedJson(str):
    """JSON text encoded before the statement runs; `encode_json` (the engines' serializer) passes it through.

    A graph's node list can be megabytes: encoding it inside SQLAlchemy's bind processing would run
    on the event loop (PostgreSQL's driver is async; SQLite statements run on the loop), so
    :meth:`Tx.save_graph` encodes it in a worker thread first.
    """


def encode_json(value: Any) -> str:
    """The `json_serializer` of both engines."""
    return value if isinstance(value, EncodedJson) else json.dumps(value)


_scan_json: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def decode_json(text: str) -> Any:
    """The `json_deserializer` of both engines: `json.loads`, in about 60 % of its time on the small texts
    of state rows (a claim of 100 states decodes 800 of them). The C scanner is called directly, without
    `json.loads`' Python layers; a text it does not consume whole (surrounding space) goes to `json.loads`.

    Example::

        decode_json('{"a": "1"}')  # {'a': '1'}, as json.loads
    """
    if text == "{}":
        return {}
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        return json.loads(text)  # raises json's own error for text that is no JSON
    return value if end == len(text) else json.loads(text)


async def encoded_off_loop(value: Any) -> EncodedJson:
    return EncodedJson(await asyncio.to_thread(dumps_in_pieces, value))


def _decoded_nodes(rows: Sequence[Any]) -> list[GraphRecord]:
    """Graph rows whose `nodes` column was read as text, decoded here (in a worker thread)."""
    records = []
    for row in rows:
        mapping = dict(row._mapping)
        nodes = mapping["nodes"]
        mapping["nodes"] = json.loads(nodes) if isinstance(nodes, str) else nodes
        records.append(GraphRecord(**{f.name: mapping[f.name] for f in fields(GraphRecord)}))
    return records


_STATE_FIELDS = tuple(f.name for f in fields(StateRecord))
ROWS_OFF_LOOP = 1000  # a write of this many states prepares its rows and counts in a worker thread
ROWS_PER_STATEMENT = 250  # a statement for many rows binds at most this many (`Tx._write_rows`)
COPY_FROM_ROWS = 1000  # an INSERT of this many rows goes by `Storage.copy_rows` where the database has it
# The JSON columns of `states` by position in `_STATE_FIELDS`, with whether None is SQL NULL (else JSON null).
_STATE_JSON = tuple(
    (position, column_type.none_as_null)
    for position, name in enumerate(_STATE_FIELDS)
    if isinstance(column_type := schema.states.c[name].type, sa.JSON)
)
_state_values = operator.attrgetter(*_STATE_FIELDS)
_PAYLOAD_COLUMNS = tuple(_STATE_FIELDS.index(name) for name in ("inputs", "outputs", "carried"))


def _state_row(record: StateRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _STATE_FIELDS}


@dataclass
class PlainStatement:
    """A statement compiled for one database: its SQL in the driver's parameter style, and which parameter
    each position takes (`Storage.plain_sql`)."""

    statement: Any
    sql: str
    names: tuple[str, ...]  # the parameter at each position (SQLite's `?` may repeat one)
    params: Mapping[str, Any]  # the statement's own values (a literal `+ 1` is a parameter too)
    _arrangers: dict[tuple[str, ...], tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]], tuple[Any, ...]]] = field(
        default_factory=dict
    )

    def arranger(self, columns: Sequence[str]) -> tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]], tuple[Any, ...]]:
        """`(pick, own)`: `pick(row + own)` is the driver's parameters for a row of `columns` (built once)."""
        key = tuple(columns)
        found = self._arrangers.get(key)
        if found is None:
            own_names = [name for name in dict.fromkeys(self.names) if name not in key]
            everything = [*key, *own_names]
            positions = [everything.index(name) for name in self.names]
            pick = operator.itemgetter(*positions) if len(positions) > 1 else lambda row: (row[positions[0]],)
            found = self._arrangers[key] = (pick, tuple(self.params[name] for name in own_names))
        return found


class JsonTexts:
    """The JSON text of column values as SQLAlchemy's JSON type would bind them, each object encoded once.

    The 10,000 siblings of a fan-out share their inputs, parents and carried values (one object each),
    and most states have empty outputs and data: each of those is encoded once, not once per row.

    Example::

        texts = JsonTexts()
        shared = {"a": "1"}
        texts.text(shared, none_as_null=False), texts.text(shared, none_as_null=False)  # encoded once
        texts.text(None, none_as_null=False)  # 'null' (a JSON null, as sa.JSON stores it)
    """

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[Any, str]] = {}  # the object is kept, so that its id is not reused

    def text(self, value: Any, *, none_as_null: bool) -> str | None:
        if value is None:
            return None if none_as_null else "null"
        if not value and type(value) is dict:
            return "{}"
        known = self._by_id.get(id(value))
        if known is not None and known[0] is value:
            return known[1]
        text = encode_json(value)
        self._by_id[id(value)] = (value, text)
        return text


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """A record class's field names, in the order its constructor takes them (found once per class)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def _record(cls: type[R], row: Any) -> R:
    mapping = row._mapping
    return cls(**{name: mapping[name] for name in _field_names(cls)})


def _records(cls: type[R], result: Any) -> list[R]:
    """A record per row of `result`: the columns' positions are found once, not looked up by name in each
    row (a claim or a batch of results reads hundreds of states, forty columns each)."""
    keys = list(result.keys())
    pick = operator.itemgetter(*(keys.index(name) for name in _field_names(cls)))
    return [cls(*pick(row)) for row in result]


class Tx:
    """One open transaction. Queries are methods; ready work and changed runs are announced after commit.

    Every write that moves a state (insert, claim, result, failure, retry, requeue) records its run
    in `runs_changed` here, so callers never announce by hand, and bumps the state's `revision`, so
    the run's version (`state_counts_by_node`) grows with each change.
    """

    def __init__(self, conn: Any, storage: Storage) -> None:
        self.conn = conn
        self._storage = storage
        self.ready: Counter[ReadyKey] = Counter()  # how many states became claimable now, per key
        self._made_ready: dict[str, ReadyKey] = {}  # state id -> its key, for each state made ready here
        self.schedule_changed = False
        self.runs_changed: set[str] = set()
        # run id -> how many more of its states are pending after this transaction (negative: fewer).
        # Told to the run feed with `runs_changed`, so that it reads a run that may have ended at once.
        self.pending_change: Counter[str] = Counter()
        self.streams_changed: set[str] = set()  # states whose live stream got chunks here
        self.earliest_lease: int | None = None  # a new lease deadline this replica's scheduler must know
        # (run_id, identifier, status) -> [node_name, states, revisions, first_created]: what this
        # transaction changes in `run_counts`, written once just before commit (`write_counts`).
        self.count_changes: dict[tuple[str, str, str], list[Any]] = {}
        # (ancestor state id, status) -> states: the same for `descendant_counts`.
        self.descendant_changes: Counter[tuple[str, str]] = Counter()
        # Runs started and claims ended, as committed; kept only while traces are on (`Storage.track_attempts`).
        self.runs_started: list[RunRecord] = []
        self.attempts_ended: list[StateRecord] = []
        self.runs_deleted: list[str] = []  # by retention: their payloads go once this commits
        self._payloads_seen: payloads.Seen = {}
        # For child graphs (`engine.child_runs`, a commit step): states inserted AWAITING_CHILD, whose
        # child runs start before commit, and runs some state of which stopped being pending here.
        self.children_to_start: list[StateRecord] = []
        self.runs_with_ended_states: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------------

    def _split_rows(self, rows: Sequence[dict[str, Any]]) -> list[payloads.Blob]:
        """Replace the large values of state rows by references, in place; the payloads to store first."""
        limits = self._storage.payload_settings
        blobs: list[payloads.Blob] = []
        for row in rows:
            run_id = row["run_id"]
            seen = self._payloads_seen
            row["inputs"], found = payloads.split_values(run_id, row["inputs"], limits, "input", seen)
            blobs.extend(found)
            row["outputs"], found = payloads.split_values(run_id, row["outputs"], limits, "output", seen)
            blobs.extend(found)
            row["carried"], found = payloads.split_carried(run_id, row["carried"], limits, seen)
            blobs.extend(found)
        return blobs

    def _state_rows(self, records: Sequence[StateRecord]) -> tuple[list[tuple[Any, ...]], list[payloads.Blob]]:
        """States as `states` rows in `_STATE_FIELDS` order, large values replaced by references and JSON
        columns as text (`JsonTexts`: shared values encoded once); the payloads to store first."""
        limits = self._storage.payload_settings
        seen = self._payloads_seen
        texts = JsonTexts()
        rows: list[tuple[Any, ...]] = []
        blobs: list[payloads.Blob] = []
        inputs_at, outputs_at, carried_at = _PAYLOAD_COLUMNS
        for record in records:
            row = list(_state_values(record))
            run_id = record.run_id
            row[inputs_at], found = payloads.split_values(run_id, record.inputs, limits, "input", seen)
            blobs.extend(found)
            row[outputs_at], found = payloads.split_values(run_id, record.outputs, limits, "output", seen)
            blobs.extend(found)
            row[carried_at], found = payloads.split_carried(run_id, record.carried, limits, seen)
            blobs.extend(found)
            for position, none_as_null in _STATE_JSON:
                row[position] = texts.text(row[position], none_as_null=none_as_null)
            rows.append(tuple(row))
        return rows, blobs

    @staticmethod
    def _large(records: Iterable[StateRecord]) -> bool:
        """Whether splitting these states' values hashes enough text to belong off the event loop."""
        chars = 0
        for r in records:
            chars += payloads.large_chars([r.inputs, r.outputs, *r.carried.values()])
            if chars >= payloads.HASH_OFF_LOOP_CHARS:
                return True
        return False

    async def sweep_orphan_payloads(self, older_than_ms: int) -> int:
        """Remove payloads of runs that do not exist, written before `older_than_ms` (`PayloadStore.sweep`)."""
        return await self._storage.payload_store.sweep(self.conn, older_than_ms)

    async def payload_texts(self, run_id: str, keys: Iterable[str]) -> dict[str, str]:
        """The text of each payload (by SHA-256) of a run; raises `payloads.PayloadMissing`."""
        texts = await self._storage.payload_store.get(self.conn, [(run_id, key) for key in keys])
        return {key: text for (_, key), text in texts.items()}

    async def load_payloads(self, run_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` of a state of `run_id` with every reference replaced by the payload's text."""
        keys = payloads.refs_in(run_id, values)
        if not keys:
            return dict(values)
        return payloads.resolved(values, await self.payload_texts(run_id, [key for _, key in keys]))

    async def _all(self, cls: type[R], query: sa.Select[Any]) -> list[R]:
        return _records(cls, await self.conn.execute(query))

    def _insert(self, table: sa.Table) -> Any:
        return self._storage.dialect_insert(table)

    async def _write_rows(self, statement: Any, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement for many rows, `ROWS_PER_STATEMENT` at a time: SQLAlchemy binds each row's
        parameters in Python (on PostgreSQL on the event loop), so 20,000 rows in one go would hold up
        every other request for half a second; between two pieces the loop serves the others."""
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            await self.conn.execute(statement, list(rows[start : start + ROWS_PER_STATEMENT]))

    async def _write_plain(self, statement: Any, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """Run `statement` for many rows of plain values (`columns` in order, JSON already text) with the
        driver's own `executemany`, `Storage.plain_rows_per_call` at a time. SQLAlchemy's per-row parameter
        processing (a dict and a bind processor per column) was the largest single item in the profile of
        a 10,000-way fan-out; here the statement is compiled once and a row is one tuple."""
        if not rows:
            return
        plain = self._storage.plain_sql(statement)
        pick, own = plain.arranger(columns)
        size = self._storage.plain_rows_per_call
        for start in range(0, len(rows), size):
            await self.conn.exec_driver_sql(plain.sql, [pick(row + own) for row in rows[start : start + size]])

    async def _insert_many(self, insert: Any, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        """`_write_plain` for a plain INSERT; many rows go by the database's bulk load where it has one
        (`Storage.copy_rows`: PostgreSQL's COPY, one command per 2,000 rows rather than an INSERT per row)."""
        if len(rows) >= COPY_FROM_ROWS and await self._storage.copy_rows(self.conn, insert.table, columns, rows):
            return
        await self._write_plain(insert, columns, rows)

    def count_change(self, state: StateRecord, status: str, states: int, revisions: int) -> None:
        """Note that `states` more (or fewer) states of `state`'s run and node are in `status`, and that
        `revisions` revisions were written; `write_counts` applies the sum at commit. The descendant counts
        change under every ancestor kept in `parents` but `uncounted_parent` (one no unite asks about)."""
        if states and status in PENDING:
            self.pending_change[state.run_id] += states
        if states:
            uncounted = state.uncounted_parent
            for ancestor_id in state.parents.values():
                if ancestor_id != uncounted:
                    self.descendant_changes[(ancestor_id, status)] += states
        change = self._count_row(state, status)
        change[1] += states
        change[2] += revisions
        change[3] = min(change[3], state.created_at)

    def _count_row(self, state: StateRecord, status: str) -> list[Any]:
        key = (state.run_id, state.identifier, status)
        change = self.count_changes.get(key)
        if change is None:
            change = self.count_changes[key] = [state.node_name, 0, 0, state.created_at, 0, 0, 0, 0.0]
        return change

    def count_usage(self, state: StateRecord, status: str, usage: Mapping[str, Any] | None) -> None:
        """Add what an attempt reported using to its run's and node's totals in `run_counts` (at commit,
        with the counts): called once per attempt, by the write that records its result."""
        if not usage:
            return
        change = self._count_row(state, status)
        for index, name in enumerate(USAGE_FIELDS, start=4):
            change[index] += usage.get(name) or 0

    def _count_move(self, state: StateRecord, was: str, to: str) -> None:
        if was in PENDING and to not in PENDING:
            self.runs_with_ended_states.add(state.run_id)
        if was != to:
            self.count_change(state, was, -1, 0)
        self.count_change(state, to, 1 if was != to else 0, 1)

    async def write_counts(self) -> None:
        """Add this transaction's count changes to `run_counts` and `descendant_counts` with atomic increments
        (exact however many replicas commit at once), table by table in key order, so that two transactions
        never wait on each other in a cycle."""
        shard = 1 + secrets.randbelow(schema.COUNT_SHARDS - 1)  # shard 0 is PostgreSQL's claims'
        if self.count_changes:
            rows = [
                (run_id, identifier, status, shard, node_name, states, revisions, first_created, *usage)
                for (run_id, identifier, status), (node_name, states, revisions, first_created, *usage) in sorted(
                    self.count_changes.items()
                )
            ]
            self.count_changes = {}
            await self._write_plain(self._storage.add_counts_statement(), _COUNT_COLUMNS, rows)
        changed = sorted((key, n) for key, n in self.descendant_changes.items() if n)
        self.descendant_changes = Counter()
        if changed:
            below = [(a, st, shard, n) for (a, st), n in changed]
            await self._write_plain(self._storage.add_descendant_counts_statement(), _DESCENDANT_COLUMNS, below)

    # -- graphs ----------------------------------------------------------------------------------

    def _graphs_query(self) -> sa.Select[Any]:
        # `nodes` comes back as text and is decoded in a worker thread (see `_graphs`): a graph of
        # 100,000 nodes is megabytes of JSON, too much to decode on the event loop.
        g = schema.graphs
        columns = [sa.cast(c, sa.Text).label(c.name) if c.name == "nodes" else c for c in g.c]
        return sa.select(*columns)

    async def _graphs(self, query: sa.Select[Any]) -> list[GraphRecord]:
        rows = list(await self.conn.execute(query))
        return await asyncio.to_thread(_decoded_nodes, rows) if rows else []

    async def get_graph(self, namespace: str, name: str) -> GraphRecord | None:
        g = schema.graphs
        found = await self._graphs(self._graphs_query().where(g.c.namespace == namespace, g.c.name == name))
        return found[0] if found else None

    async def graph_head(self, namespace: str, name: str) -> GraphHead | None:
        """A graph's version and validation, without reading (or decoding) its nodes."""
        row = (await self.conn.execute(GET_GRAPH_HEAD, {"namespace": namespace, "name": name})).first()
        return None if row is None else GraphHead(row.version, row.validation_status, row.validation_errors)

    async def get_graphs(self, keys: Iterable[tuple[str, str]]) -> list[GraphRecord]:
        """Several graphs by (namespace, name), in that order."""
        wanted = sorted(set(keys))
        if not wanted:
            return []
        g = schema.graphs
        query = self._graphs_query().where(sa.tuple_(g.c.namespace, g.c.name).in_(wanted))
        return sorted(await self._graphs(query), key=lambda r: (r.namespace, r.name))

    async def lock_graph_version(self, namespace: str, name: str) -> tuple[int, int] | None:
        """(version, created_at) of a graph, row locked until commit; the nodes are not read."""
        g = schema.graphs
        query = (
            sa.select(g.c.version, g.c.created_at).where(g.c.namespace == namespace, g.c.name == name).with_for_update()
        )
        row = (await self.conn.execute(query)).first()
        return (int(row[0]), int(row[1])) if row is not None else None

    async def list_graphs(self, namespace: str | None = None) -> list[GraphRecord]:
        g = schema.graphs
        query = self._graphs_query().order_by(g.c.namespace, g.c.name)
        if namespace is not None:
            query = query.where(g.c.namespace == namespace)
        return await self._graphs(query)

    async def save_graph(self, record: GraphRecord) -> None:
        # Not `asdict`: it would deep-copy the node list on the event loop.
        values = {f.name: getattr(record, f.name) for f in fields(GraphRecord)}
        values["nodes"] = await encoded_off_loop(record.nodes)
        stmt = self._insert(schema.graphs).values(**values)
        updates = {k: v for k, v in values.items() if k not in ("namespace", "name", "created_at")}
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=["namespace", "name"], set_=updates))

    async def set_graph_validation(
        self, namespace: str, name: str, status: str, errors: list[str], warnings: list[str]
    ) -> None:
        g = schema.graphs
        await self.conn.execute(
            sa.update(g)
            .where(g.c.namespace == namespace, g.c.name == name)
            .values(validation_status=status, validation_errors=errors, validation_warnings=warnings)
        )

    async def insert_graph_version(self, record: GraphVersionRecord) -> None:
        values = {f.name: getattr(record, f.name) for f in fields(GraphVersionRecord)}
        values["nodes"] = await encoded_off_loop(record.nodes)
        await self.conn.execute(sa.insert(schema.graph_versions).values(**values))

    async def replace_graph_node_refs(self, namespace: str, name: str, node_refs: Iterable[tuple[str, str]]) -> None:
        """Record which registered nodes, as (node namespace, node name), a graph uses; replaces the old list."""
        r = schema.graph_node_refs
        await self.conn.execute(sa.delete(r).where(r.c.graph_namespace == namespace, r.c.graph_name == name))
        rows = [
            {"node_namespace": ns, "node_name": node, "graph_namespace": namespace, "graph_name": name}
            for ns, node in sorted(set(node_refs))
        ]
        if rows:
            await self.conn.execute(sa.insert(r), rows)

    async def graphs_using_nodes(self, node_refs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """(namespace, name) of every graph that uses one of the nodes, found by the table's primary key."""
        wanted = sorted(set(node_refs))
        if not wanted:
            return []
        r = schema.graph_node_refs
        query = (
            sa.select(r.c.graph_namespace, r.c.graph_name)
            .distinct()
            .where(sa.tuple_(r.c.node_namespace, r.c.node_name).in_(wanted))
            .order_by(r.c.graph_namespace, r.c.graph_name)
        )
        return [(ns, name) for ns, name in await self.conn.execute(query)]

    async def get_graph_version(self, namespace: str, name: str, version: int) -> GraphVersionRecord | None:
        params = {"namespace": namespace, "name": name, "version": version}
        row = (await self.conn.execute(GET_GRAPH_VERSION, params)).first()
        return _record(GraphVersionRecord, row) if row is not None else None

    # -- registered nodes ------------------------------------------------------------------------

    async def upsert_registered_node(self, record: RegisteredNodeRecord) -> None:
        values = asdict(record)
        stmt = self._insert(schema.registered_nodes).values(**values)
        updates = {k: v for k, v in values.items() if k not in ("namespace", "name", "created_at")}
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=["namespace", "name"], set_=updates))

    async def get_registered_nodes(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], RegisteredNodeRecord]:
        wanted = set(pairs)
        if not wanted:
            return {}
        n = schema.registered_nodes
        query = sa.select(n).where(n.c.namespace.in_({ns for ns, _ in wanted}), n.c.name.in_({nm for _, nm in wanted}))
        found = await self._all(RegisteredNodeRecord, query)
        return {(r.namespace, r.name): r for r in found if (r.namespace, r.name) in wanted}

    async def list_registered_nodes(self, namespace: str) -> list[RegisteredNodeRecord]:
        n = schema.registered_nodes
        return await self._all(RegisteredNodeRecord, sa.select(n).where(n.c.namespace == namespace).order_by(n.c.name))

    async def list_namespaces(self) -> list[str]:
        n = schema.registered_nodes
        rows = await self.conn.execute(
            sa.select(n.c.namespace).distinct().where(n.c.namespace != "").order_by(n.c.namespace)
        )
        return [row[0] for row in rows]

    # -- server settings and graph secrets -------------------------------------------------------

    async def get_server_setting(self, name: str) -> str | None:
        t = schema.server_settings
        row = (await self.conn.execute(sa.select(t.c.value).where(t.c.name == name))).first()
        return None if row is None else str(row[0])

    async def set_server_setting(self, name: str, value: str) -> None:
        stmt = self._insert(schema.server_settings).values(name=name, value=value)
        await self.conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"value": value}))

    async def graph_secrets(self) -> list[tuple[str, str, dict[str, str]]]:
        """(namespace, name, encrypted secrets) of every graph that has any, locked for re-encryption."""
        g = schema.graphs
        rows = await self.conn.execute(
            sa.select(g.c.namespace, g.c.name, g.c.secrets).order_by(g.c.namespace, g.c.name).with_for_update()
        )
        return [(namespace, name, dict(secrets)) for namespace, name, secrets in rows if secrets]

    async def set_graph_secrets(self, namespace: str, name: str, secrets: Mapping[str, str]) -> None:
        g = schema.graphs
        await self.conn.execute(
            sa.update(g).where(g.c.namespace == namespace, g.c.name == name).values(secrets=dict(secrets))
        )

    # -- runs ------------------------------------------------------------------------------------

    async def insert_runs(self, records: Sequence[RunRecord]) -> None:
        if not records:
            return
        await self.conn.execute(INSERT_RUN, [asdict(r) for r in records])
        if self._storage.track_attempts:
            self.runs_started += records

    async def take_trigger_key(
        self, namespace: str, graph_name: str, key: str, run_id: str, now: int, expires_at: int
    ) -> str:
        """Bind an idempotency key to `run_id` unless a live binding exists; the run id the key names.

        Insert-or-get on the table's primary key: on PostgreSQL a concurrent transaction with the same
        key waits for this one and then finds its row, so two replicas never both start a run. An
        expired binding (not yet swept) is taken over by a compare-and-set on its expiry.
        """
        row = {"namespace": namespace, "graph_name": graph_name, "key": key, "run_id": run_id, "expires_at": expires_at}
        inserted = await self.conn.execute(self._storage.take_trigger_key_statement(), row)
        if inserted.rowcount == 1:
            return run_id
        same_key = {"key_namespace": namespace, "key_graph_name": graph_name, "key_text": key}
        renewed = await self.conn.execute(
            RENEW_TRIGGER_KEY, {**same_key, "now": now, "new_run_id": run_id, "new_expires_at": expires_at}
        )
        if renewed.rowcount == 1:
            return run_id
        return str((await self.conn.execute(TRIGGER_KEY_OWNER, same_key)).scalar_one())

    async def delete_expired_trigger_keys(self, now: int, limit: int) -> int:
        """Forget up to `limit` idempotency keys whose time is over (by the expiry index)."""
        t = schema.trigger_keys
        expired = sa.select(t.c.namespace, t.c.graph_name, t.c.key).where(t.c.expires_at <= now).limit(limit)
        keys = [tuple(row) for row in await self.conn.execute(expired)]
        if not keys:
            return 0
        await self.conn.execute(
            sa.delete(t).where(sa.tuple_(t.c.namespace, t.c.graph_name, t.c.key).in_(keys), t.c.expires_at <= now)
        )
        return len(keys)

    def _note_attempts_ended(self, moves: Iterable[tuple[str, StateRecord]]) -> None:
        """Claims that ended (the state left QUEUED), as they are now, for the traces."""
        if self._storage.track_attempts:
            self.attempts_ended += [replace(state) for was, state in moves if was == StateStatus.QUEUED]

    async def get_runs(self, run_ids: Sequence[str]) -> list[RunRecord]:
        if not run_ids:
            return []
        return _records(RunRecord, await self.conn.execute(GET_RUNS, {"run_ids": list(run_ids)}))

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = (await self.conn.execute(GET_RUN, {"run_id": run_id})).first()
        return _record(RunRecord, row) if row is not None else None

    async def child_runs(self, parent_state_ids: Sequence[str]) -> list[RunRecord]:
        """The child runs started for these states (one per attempt of a node that names a graph)."""
        if not parent_state_ids:
            return []
        r = schema.runs
        query = sa.select(r).where(r.c.parent_state_id.in_(list(parent_state_ids))).order_by(r.c.created_at, r.c.run_id)
        return await self._all(RunRecord, query)

    async def child_runs_of_run(self, run_id: str) -> list[RunRecord]:
        """The child runs started by the states of one run, oldest first."""
        r = schema.runs
        query = sa.select(r).where(r.c.parent_run_id == run_id).order_by(r.c.created_at, r.c.run_id)
        return await self._all(RunRecord, query)

    async def ending_states(self, run_id: str, identifiers: Collection[str]) -> list[StateRecord]:
        """The run's succeeded states of these nodes (a graph's last nodes), in the order they were made."""
        s = schema.states
        query = (
            sa.select(s)
            .where(s.c.run_id == run_id, s.c.identifier.in_(list(identifiers)), s.c.status == StateStatus.SUCCESS.value)
            .order_by(s.c.created_at, s.c.id)
        )
        return await self._all(StateRecord, query)

    async def run_counts(self, run_ids: Sequence[str]) -> dict[str, RunCounts]:
        """How many states each run has per count group, from `run_counts` (a few rows per run)."""
        counts = {run_id: RunCounts() for run_id in run_ids}
        if not run_ids:
            return counts
        c = schema.run_counts
        query = (
            sa.select(c.c.run_id, c.c.status, sa.func.sum(c.c.states), *_USAGE_SUMS)
            .where(c.c.run_id.in_(run_ids))
            .group_by(c.c.run_id, c.c.status)
        )
        for run_id, status, count, *usage in await self.conn.execute(query):
            if count:
                counts[run_id].add(status, int(count))
            counts[run_id].usage.add(_usage_totals(usage))  # kept where its attempt ended, whatever moved since
        return counts

    async def run_usage(self, run_id: str) -> UsageTotals:
        """What the run's attempts reported using: committed, plus what this transaction adds (written only at
        commit). A few rows per run, whatever its size."""
        c = schema.run_counts
        committed = (await self.conn.execute(sa.select(*_USAGE_SUMS).where(c.c.run_id == run_id))).one()
        used = _usage_totals(committed)
        for (changed_run, _identifier, _status), change in self.count_changes.items():
            if changed_run == run_id:
                used.add(UsageTotals(*change[4:]))
        return used

    # -- states ----------------------------------------------------------------------------------

    async def insert_states(self, records: Sequence[StateRecord]) -> None:
        """Insert states with their ancestry; ready ones are announced to claimers after commit."""
        if not records:
            return
        for record in records:
            check_initial(record.status)

        def prepare() -> tuple[list[tuple[Any, ...]], list[tuple[str, str]], list[payloads.Blob]]:
            # Rows are tuples of plain values, JSON already text: no per-row dicts, no per-row binding in
            # SQLAlchemy (see `_write_plain`). The counts are noted here too.
            rows, blobs = self._state_rows(records)  # revision: 1 by default
            links = [(a, r.id) for r in records for a in dict.fromkeys(r.parents.values())]
            for r in records:
                self.count_change(r, r.status, 1, 1)
            return rows, links, blobs

        # The 20,000 states of a 10,000-way fan-out take long enough to prepare to hold up every other
        # request, and so does hashing a large payload: a worker thread does it (this transaction is
        # suspended meanwhile, so nothing races).
        off_loop = len(records) >= ROWS_OFF_LOOP or self._large(records)
        rows, links, blobs = await asyncio.to_thread(prepare) if off_loop else prepare()
        await self._storage.payload_store.put(self.conn, blobs)
        await self._insert_many(INSERT_STATES, _STATE_FIELDS, rows)
        await self._insert_many(INSERT_ANCESTORS, ("ancestor_id", "state_id"), links)
        self._announce(records)

    async def insert_state_unless_duplicate(self, record: StateRecord) -> bool:
        """Insert one state unless its attempt key or unite fingerprint exists; True when inserted."""
        check_initial(record.status)
        row = _state_row(record)
        blobs = await asyncio.to_thread(self._split_rows, [row]) if self._large([record]) else self._split_rows([row])
        await self._storage.payload_store.put(self.conn, blobs)
        stmt = self._insert(schema.states).values(**row).on_conflict_do_nothing()
        result = await self.conn.execute(stmt)
        if result.rowcount == 0:
            return False
        self.count_change(record, record.status, 1, 1)
        links = [{"ancestor_id": a, "state_id": record.id} for a in dict.fromkeys(record.parents.values())]
        if links:
            await self.conn.execute(sa.insert(schema.state_ancestors), links)
        self._announce([record])
        return True

    def note_lease(self, deadline: int) -> None:
        self.earliest_lease = deadline if self.earliest_lease is None else min(self.earliest_lease, deadline)

    def _announce(self, records: Iterable[StateRecord]) -> None:
        now = now_ms()
        for r in records:
            self.runs_changed.add(r.run_id)
            if r.status == StateStatus.AWAITING_CHILD:
                self.children_to_start.append(r)
            elif r.status == StateStatus.CREATED:
                if r.enqueue_after <= now:
                    self.ready[(r.namespace, r.node_name)] += 1
                    self._made_ready[r.id] = (r.namespace, r.node_name)
                else:
                    self.schedule_changed = True

    async def get_state(self, state_id: str, *, for_update: bool = False) -> StateRecord | None:
        query = GET_STATE_FOR_UPDATE if for_update else GET_STATE
        row = (await self.conn.execute(query, {"state_id": state_id})).first()
        return _record(StateRecord, row) if row is not None else None

    async def get_states(self, state_ids: Sequence[str]) -> list[StateRecord]:
        s = schema.states
        return await self._all(StateRecord, sa.select(s).where(s.c.id.in_(state_ids)))

    async def update_states(self, states: Sequence[StateRecord], **values: Any) -> None:
        """Write columns of states other than their status (statuses change through `move_states`); their
        runs are announced as changed after commit."""
        if "status" in values:
            raise TypeError("update_states cannot change a status: use move_states, which checks the move")
        await self._update(states, values)

    async def _update(self, states: Sequence[StateRecord], values: dict[str, Any]) -> None:
        if not states:
            return
        s = schema.states
        values.setdefault("updated_at", now_ms())
        ids = [state.id for state in states]
        await self.conn.execute(sa.update(s).where(s.c.id.in_(ids)).values(revision=s.c.revision + 1, **values))
        for state in states:
            self._count_move(state, state.status, values.get("status", state.status))
        self.runs_changed.update(state.run_id for state in states)
        await self._release_holds([(state.status, values.get("status", state.status), state) for state in states])

    async def _release_holds(self, moves: Iterable[tuple[str, str, StateRecord]]) -> None:
        """States with limits that leave QUEUED free their concurrency slots, and the claimers of their
        node are woken for the states that waited for a slot."""
        leaving = [s for was, to, s in moves if s.limits and was == StateStatus.QUEUED.value and to != was]
        if leaving:
            await limit_queries.release_holds(self.conn, [s.id for s in leaving])
            for state in leaving:
                self.ready[(state.namespace, state.node_name)] += 1

    async def move_states(self, states: Sequence[StateRecord], to: StateStatus, **values: Any) -> None:
        """Move states, as read in this transaction, to status `to` and write `values` with it.

        Every move is checked against `exospherehost.statuses.ALLOWED_MOVES` first (an
        `IllegalMoveError` otherwise); the records are updated to match.
        """
        for state in states:
            check_move(state.status, to)
        await self._update(states, {**values, "status": to.value})
        for state in states:
            self.count_usage(state, to.value, values.get("usage"))
        if self._storage.track_attempts:
            ended = {k: v for k, v in values.items() if k in ("error", "finished_at")}
            self._note_attempts_ended((s.status, replace(s, status=to.value, **ended)) for s in states)
        for state in states:
            state.status = to.value

    # -- cancelled runs and deadlines ------------------------------------------------------------

    async def lock_cancellable_states(self, run_id: str) -> list[StateRecord]:
        """The run's states that have not ended, locked in id order (the order completions lock in)."""
        s = schema.states
        query = (
            sa.select(s)
            .where(s.c.run_id == run_id, s.c.status.in_(status_values(CANCELLABLE)))
            .order_by(s.c.id)
            .with_for_update()
        )
        return await self._all(StateRecord, query)

    async def lock_waiting_states(self, run_id: str) -> list[StateRecord]:
        """The run's states that wait (CREATED or WAITING: not executing), locked, skipping those another
        transaction holds (SKIP LOCKED): called by a transaction that already holds other states of the
        run, which must never wait on a lock in a cycle. A state skipped is being claimed, woken or
        cancelled; the next transaction that ends an attempt of the run looks again."""
        s = schema.states
        waiting = status_values((StateStatus.CREATED, StateStatus.WAITING))
        query = (
            sa.select(s)
            .where(s.c.run_id == run_id, s.c.status.in_(waiting))
            .order_by(s.c.id)
            .with_for_update(skip_locked=True)
        )
        return await self._all(StateRecord, query)

    async def get_run_cancellation(self, run_id: str) -> RunCancellationRecord | None:
        c = schema.run_cancellations
        row = (await self.conn.execute(sa.select(c).where(c.c.run_id == run_id))).first()
        return _record(RunCancellationRecord, row) if row is not None else None

    async def get_run_cancellations(self, run_ids: Sequence[str]) -> dict[str, RunCancellationRecord]:
        if not run_ids:
            return {}
        c = schema.run_cancellations
        found = await self._all(RunCancellationRecord, sa.select(c).where(c.c.run_id.in_(run_ids)))
        return {record.run_id: record for record in found}

    async def insert_run_cancellation(self, record: RunCancellationRecord) -> bool:
        """Record a cancel unless one is recorded already; True when this one was inserted."""
        stmt = self._insert(schema.run_cancellations).values(**asdict(record)).on_conflict_do_nothing()
        inserted: int = (await self.conn.execute(stmt)).rowcount
        return inserted == 1

    async def insert_run_deadline(self, run_id: str, deadline_at: int) -> None:
        await self.conn.execute(sa.insert(schema.run_deadlines).values(run_id=run_id, deadline_at=deadline_at))
        self.schedule_changed = True

    async def due_run_deadlines(self, now: int, limit: int) -> list[str]:
        """Runs whose deadline has passed, oldest deadline first, each locked by one replica only."""
        d = schema.run_deadlines
        query = (
            sa.select(d.c.run_id)
            .where(d.c.deadline_at <= now)
            .order_by(d.c.deadline_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return [row[0] for row in await self.conn.execute(query)]

    async def delete_run_deadline(self, run_id: str) -> None:
        d = schema.run_deadlines
        await self.conn.execute(sa.delete(d).where(d.c.run_id == run_id))

    async def next_run_deadline(self) -> int | None:
        d = schema.run_deadlines
        value = (await self.conn.execute(sa.select(sa.func.min(d.c.deadline_at)))).scalar_one()
        return int(value) if value is not None else None

    # -- waits for signals -----------------------------------------------------------------------

    async def waiting_states(self, run_id: str, name: str) -> list[StateRecord]:
        """The run's states waiting for signal `name`, locked in id order (the order completions lock in)."""
        s = schema.states
        query = (
            sa.select(s)
            .where(IS_WAITING, s.c.run_id == run_id, s.c.waiting_for == name)
            .order_by(s.c.id)
            .with_for_update()
        )
        return await self._all(StateRecord, query)

    async def timed_out_waits(self, now: int, limit: int) -> list[StateRecord]:
        """States whose wait timed out, earliest first, each taken by one replica only."""
        return await self._due_states(IS_WAITING, schema.states.c.wait_timeout_at, now, limit)

    async def next_wait_timeout(self) -> int | None:
        return await self._earliest(IS_WAITING, schema.states.c.wait_timeout_at)

    async def get_run_signal(self, run_id: str, name: str) -> RunSignalRecord | None:
        g = schema.run_signals
        row = (await self.conn.execute(sa.select(g).where(g.c.run_id == run_id, g.c.name == name))).first()
        return _record(RunSignalRecord, row) if row is not None else None

    async def put_run_signal(self, record: RunSignalRecord) -> None:
        """Keep `record` as the run's last signal of its name, replacing an earlier one."""
        stmt = self._insert(schema.run_signals).values(**asdict(record))
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "name"], set_={"payload": record.payload, "sent_at": record.sent_at}
            )
        )

    # -- which nodes runtimes ask for ------------------------------------------------------------

    async def note_node_polls(self, keys: Iterable[ReadyKey], now: int) -> None:
        """Record that runtimes asked for work of these (namespace, node) pairs at `now`."""
        rows = [{"namespace": ns, "node_name": node, "polled_at": now} for ns, node in sorted(set(keys))]
        if not rows:
            return
        stmt = self._insert(schema.node_polls)
        await self.conn.execute(
            stmt.on_conflict_do_update(index_elements=["namespace", "node_name"], set_={"polled_at": now}), rows
        )

    async def unserved_waiting(self, waiting_since: int, run_id: str | None = None) -> dict[ReadyKey, int]:
        """(namespace, node) -> how many states have been ready since `waiting_since` or earlier while no
        runtime asked for that node since then; for one run, or everywhere (from the ready index)."""
        s, p = schema.states, schema.node_polls
        asked = sa.exists().where(
            p.c.namespace == s.c.namespace, p.c.node_name == s.c.node_name, p.c.polled_at >= waiting_since
        )
        query = (
            sa.select(s.c.namespace, s.c.node_name, sa.func.count())
            .where(IS_CREATED, s.c.enqueue_after <= waiting_since, ~asked)
            .group_by(s.c.namespace, s.c.node_name)
        )
        if run_id is not None:
            query = query.where(s.c.run_id == run_id)
        return {(ns, node): int(count) for ns, node, count in await self.conn.execute(query)}

    async def extend_lease(self, state_id: str, expires_at: int) -> None:
        """A heartbeat: the state does not move, so its run is not announced."""
        s = schema.states
        await self.conn.execute(sa.update(s).where(s.c.id == state_id).values(lease_expires_at=expires_at))
        self.note_lease(expires_at)

    async def finish_states(self, moves: Sequence[tuple[str, StateRecord]]) -> None:
        """The hot write of completions, prebuilt and sent as one batch: each state's `status`, `outputs`,
        `error` and `finished_at` as the records hold them.

        Each move is `(the status read under lock, the record)`: checked against `ALLOWED_MOVES` first.
        """
        if not moves:
            return
        for was, state in moves:
            check_move(was, state.status)

        limits = self._storage.payload_settings

        def prepare() -> tuple[list[tuple[Any, ...]], list[payloads.Blob]]:
            rows: list[tuple[Any, ...]] = []
            blobs: list[payloads.Blob] = []
            texts = JsonTexts()  # the 10,000 siblings of a fan-out share their outputs: encoded once
            for _, s in moves:
                outputs, found = payloads.split_values(s.run_id, s.outputs, limits, "output", self._payloads_seen)
                blobs.extend(found)
                output_text = texts.text(outputs, none_as_null=False)
                usage_text = texts.text(s.usage, none_as_null=False)
                rows.append((s.id, s.status, output_text, s.error, usage_text, s.finished_at))
            for was, state in moves:
                self._count_move(state, was, state.status)
                self.count_usage(state, state.status, state.usage)
            return rows, blobs

        off_loop = len(moves) >= ROWS_OFF_LOOP or self._large([s for _, s in moves])
        rows, blobs = await asyncio.to_thread(prepare) if off_loop else prepare()
        await self._storage.payload_store.put(self.conn, blobs)
        await self._write_plain(FINISH_STATE, _FINISH_COLUMNS, rows)
        self.runs_changed.update(state.run_id for _, state in moves)
        await self._release_holds([(was, state.status, state) for was, state in moves])
        self._note_attempts_ended(moves)

    async def requeue_state(self, state: StateRecord, enqueue_after: int, **values: Any) -> None:
        """Put a state back to CREATED: announced now if due, else handed to the scheduler."""
        await self.move_states([state], StateStatus.CREATED, enqueue_after=enqueue_after, **values)
        state.enqueue_after = enqueue_after
        self._announce([state])

    async def claim_states(
        self,
        namespace: str,
        node_names: Sequence[str],
        limit: int,
        lease_id: str,
        lease_ms: int,
        claimant: Claimant = (None, None),
        *,
        counting_claim: Any = None,
    ) -> list[StateRecord]:
        """Hand out up to `limit` ready states, oldest first; each claim is a lease, recorded with the
        claimant (the runtime's name and instance, when it sent them).

        `counting_claim`: a statement that claims as `CLAIM_STATES` does and also adds the claims to
        `run_counts` (PostgreSQL claims in one autocommitted statement); else `write_counts` does.
        """
        now = now_ms()
        params = {
            "b_runtime_name": claimant[0],
            "b_runtime_instance": claimant[1],
            "b_namespace": namespace,
            "b_node_names": list(node_names),
            "b_now": now,
            "b_limit": limit,
            "b_lease_id": lease_id,
            "b_lease_expires_at": now + lease_ms,
            "b_lease_ms": lease_ms,
        }
        if counting_claim is not None:
            params["b_shard"] = schema.CLAIM_SHARD
        statement = CLAIM_STATES if counting_claim is None else counting_claim
        claimed = _records(StateRecord, await self.conn.execute(statement, params))
        claimed.sort(key=lambda r: (claim_order(r), r.id))
        self._keep_quiet_about(claimed)
        if claimed:
            self.note_lease(min(s.lease_expires_at or now + lease_ms for s in claimed))
            self.runs_changed.update(state.run_id for state in claimed)
            if counting_claim is None:
                for state in claimed:
                    self._count_move(state, StateStatus.CREATED.value, state.status)
        return claimed

    async def claim_limited_states(
        self,
        namespace: str,
        node_names: Sequence[str],
        limit: int,
        lease_id: str,
        lease_ms: int,
        claimant: Claimant = (None, None),
    ) -> tuple[list[StateRecord], int | None]:
        """Hand out up to `limit` ready states with limits, oldest first, whose buckets all have room
        (`limit_buckets.decide`), and charge them; also when they may have room again (None: no wait).

        Exact across replicas: the buckets are locked (FOR UPDATE, in key order) from before they are
        read until the charges commit, and a concurrency cap counts the committed holds under that lock.
        """
        now = now_ms()
        params = {
            "b_namespace": namespace,
            "b_node_names": list(node_names),
            "b_now": now,
            "b_window": 2 * limit + LIMITED_WINDOW,
        }
        candidates = _records(StateRecord, await self.conn.execute(LIMITED_READY, params))
        if not candidates:
            return [], None
        keys = sorted({key for state in candidates for key, _, _ in charges_of(state)})
        names = [name for name, _ in keys if not name.startswith(NODE_PREFIX)]
        limits = await limit_queries.limits_named(self.conn, namespace, names)
        buckets = await limit_queries.lock_buckets(self.conn, self._insert, namespace, keys, limits, now)
        for key, bucket in buckets.items():
            refill(bucket, limits.get(key[0]), now)
        metered = [k for k in keys if k[0] in limits and limits[k[0]].tokens_per_minute]
        corrected = await limit_queries.take_corrections(self.conn, namespace, metered)
        for key, tokens in corrected.items():
            buckets[key].tokens -= tokens  # after the refill: usage above the estimate is owed from now
        capped = [k for k in keys if k[0].startswith(NODE_PREFIX) or (k[0] in limits and limits[k[0]].concurrency)]
        held = await limit_queries.held_counts(self.conn, namespace, capped)
        decision = decide(candidates, buckets, limits, held, now=now, limit=limit)
        changed = {**{key: buckets[key] for key in corrected}, **decision.changed}
        await limit_queries.save_buckets(self.conn, changed.values())
        if not decision.chosen:
            return [], decision.retry_at
        await limit_queries.add_holds(self.conn, namespace, decision.holds)
        rows = await self.conn.execute(
            CLAIM_CHOSEN,
            {
                "b_ids": [state.id for state in decision.chosen],
                "b_runtime_name": claimant[0],
                "b_runtime_instance": claimant[1],
                "b_now": now,
                "b_lease_id": lease_id,
                "b_lease_expires_at": now + lease_ms,
                "b_lease_ms": lease_ms,
            },
        )
        claimed = sorted(_records(StateRecord, rows), key=lambda r: (r.enqueue_after, r.id))
        self._keep_quiet_about(claimed)
        self.note_lease(min(s.lease_expires_at or now + lease_ms for s in claimed))
        self.runs_changed.update(state.run_id for state in claimed)
        for state in claimed:
            self._count_move(state, StateStatus.CREATED.value, state.status)
        return claimed, decision.retry_at

    # -- limits ----------------------------------------------------------------------------------

    async def get_limit(self, namespace: str, name: str) -> LimitRecord | None:
        return (await limit_queries.limits_named(self.conn, namespace, [name])).get(name)

    async def list_limits(self, namespace: str) -> list[LimitRecord]:
        return await limit_queries.list_limits(self.conn, namespace)

    async def put_limit(self, record: LimitRecord) -> None:
        await limit_queries.put_limit(self.conn, self._insert, record)

    async def delete_limit(self, namespace: str, name: str) -> bool:
        return await limit_queries.delete_limit(self.conn, namespace, name)

    async def pause_limit(self, namespace: str, name: str, key: str | None, until: int) -> None:
        await limit_queries.pause(self.conn, self._insert, namespace, name, key, until)

    async def correct_limit_tokens(self, namespace: str, corrections: Sequence[tuple[tuple[str, str], float]]) -> None:
        """Tokens to take from (or give back to) buckets, each `((limit, key), tokens)`: applied by the next
        claim of the bucket, under its lock, so that this transaction locks no bucket."""
        await limit_queries.add_corrections(self.conn, namespace, corrections)

    async def mark_limited_nodes(self, nodes: Iterable[tuple[str, str]]) -> None:
        await limit_queries.mark_limited_nodes(self.conn, self._insert, nodes)

    async def limited_nodes(self) -> set[tuple[str, str]]:
        return await limit_queries.limited_nodes(self.conn)

    def _keep_quiet_about(self, claimed: Sequence[StateRecord]) -> None:
        """States this transaction made ready and claimed itself (a completion's eager dispatch) are
        not announced: a claimer woken for them would find nothing."""
        for state in claimed:
            key = self._made_ready.pop(state.id, None)
            if key is not None:
                self.ready[key] -= 1
                if self.ready[key] <= 0:
                    del self.ready[key]

    async def has_descendants(self, ancestor_id: str, statuses: Iterable[str]) -> bool:
        """Whether any descendant of one state is in one of `statuses`: from `descendant_counts` (committed)
        plus this transaction's own moves, which are written only at commit."""
        wanted = status_values(statuses)
        params = {"ancestor_id": ancestor_id, "statuses": wanted}
        committed = (await self.conn.execute(DESCENDANTS_IN, params)).scalar_one() or 0
        own = sum(self.descendant_changes[(ancestor_id, status)] for status in wanted)
        return int(committed) + own > 0

    async def with_full_lineage(self, states: Sequence[StateRecord]) -> list[StateRecord]:
        """The states with `parents` holding their whole lineage, root first (PROTOCOL §5.2), for people reading it.

        A state's row keeps only some ancestors (see `schema.states.parents`); the rest are found by
        following `parent_id` upwards, for all the states at once, in one recursive statement. A
        state written before migration 0006 has no `parent_id` and its row holds its whole lineage.
        """
        s = schema.states
        starts = {state.parent_id for state in states if state.parent_id is not None}
        if not starts:
            return list(states)
        up = sa.select(s.c.id, s.c.identifier, s.c.parent_id).where(s.c.id.in_(starts)).cte("up", recursive=True)
        # UNION, not UNION ALL: states of one page share most of their ancestors, each is read once.
        up = up.union(sa.select(s.c.id, s.c.identifier, s.c.parent_id).where(s.c.id == up.c.parent_id))
        found = {row.id: (row.identifier, row.parent_id) for row in await self.conn.execute(sa.select(up))}
        tops = [state_id for state_id, (_, parent_id) in found.items() if parent_id is None]
        top_parents: dict[str, dict[str, str]] = {}
        if tops:
            query = sa.select(s.c.id, s.c.parents).where(s.c.id.in_(tops))
            top_parents = {row.id: dict(row.parents) for row in await self.conn.execute(query)}
        full: list[StateRecord] = []
        for state in states:
            chain: list[tuple[str, str]] = []
            above: dict[str, str] = {}
            current = state.parent_id
            while current is not None and current in found:
                identifier, parent_id = found[current]
                chain.append((identifier, current))
                if parent_id is None:
                    above = top_parents.get(current, {})  # {} for a root; the whole lineage for an old row
                current = parent_id
            full.append(replace(state, parents={**above, **dict(reversed(chain))}) if chain else state)
        return full

    async def lock_states(self, state_ids: Sequence[str]) -> dict[str, StateRecord]:
        """Read and lock (PostgreSQL: FOR UPDATE) several states, always in id order."""
        if not state_ids:
            return {}
        rows = await self.conn.execute(LOCK_STATES, {"ids": list(state_ids)})
        return {r.id: r for r in _records(StateRecord, rows)}

    async def states_of_run(self, run_id: str, offset: int = 0, limit: int | None = None) -> list[StateRecord]:
        """A run's states, oldest first; a page of them with `offset` and `limit`."""
        s = schema.states
        query = sa.select(s).where(s.c.run_id == run_id).order_by(s.c.created_at, s.c.id).offset(offset)
        return await self._all(StateRecord, query if limit is None else query.limit(limit))

    async def expired_leases(self, now: int, limit: int) -> list[StateRecord]:
        return await self._due_states(IS_QUEUED, schema.states.c.lease_expires_at, now, limit)

    async def next_lease_expiry(self) -> int | None:
        return await self._earliest(IS_QUEUED, schema.states.c.lease_expires_at)

    async def _due_states(
        self, status: sa.TextClause, due_at: sa.Column[Any], now: int, limit: int
    ) -> list[StateRecord]:
        # SKIP LOCKED: on PostgreSQL each replica's scheduler takes its own share of the due states.
        query = (
            sa.select(schema.states)
            .where(status, due_at <= now)
            .order_by(due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return await self._all(StateRecord, query)

    async def _earliest(self, status: sa.TextClause, due_at: sa.Column[Any]) -> int | None:
        value = (await self.conn.execute(sa.select(sa.func.min(due_at)).where(status))).scalar_one()
        return int(value) if value is not None else None

    async def next_due_after(self, now: int) -> int | None:
        s = schema.states
        query = sa.select(sa.func.min(s.c.enqueue_after)).where(IS_CREATED, s.c.enqueue_after > now)
        value = (await self.conn.execute(query)).scalar_one()
        return int(value) if value is not None else None

    async def ready_keys_due_between(self, start: int, end: int) -> set[ReadyKey]:
        s = schema.states
        query = (
            sa.select(s.c.namespace, s.c.node_name)
            .distinct()
            .where(IS_CREATED, s.c.enqueue_after > start, s.c.enqueue_after <= end)
        )
        return {(ns, node) for ns, node in await self.conn.execute(query)}

    async def ready_depths(self, now: int) -> dict[ReadyKey, int]:
        """How many states wait for a runtime, per (namespace, node): the ready-queue depth."""
        s = schema.states
        query = (
            sa.select(s.c.namespace, s.c.node_name, sa.func.count())
            .where(IS_CREATED, s.c.enqueue_after <= now)
            .group_by(s.c.namespace, s.c.node_name)
        )
        return {(ns, node): int(count) for ns, node, count in await self.conn.execute(query)}

    async def delete_finished_runs(self, older_than: int, limit: int) -> int:
        """Retention: drop runs created before `older_than` whose states are all final."""
        r, s, a = schema.runs, schema.states, schema.state_ancestors
        live = sa.select(s.c.run_id).where(s.c.status.in_(status_values(PENDING)))
        victims = sa.select(r.c.run_id).where(r.c.created_at < older_than, r.c.run_id.not_in(live)).limit(limit)
        run_ids = [row[0] for row in await self.conn.execute(victims)]
        if not run_ids:
            return 0
        state_ids = sa.select(s.c.id).where(s.c.run_id.in_(run_ids))
        d = schema.descendant_counts
        await self.conn.execute(sa.delete(d).where(d.c.ancestor_id.in_(state_ids)))
        await self.conn.execute(sa.delete(a).where(a.c.state_id.in_(state_ids)))
        for table in (schema.run_cancellations, schema.run_deadlines, schema.run_signals):
            await self.conn.execute(sa.delete(table).where(table.c.run_id.in_(run_ids)))
        chunks = schema.stream_chunks
        await self.conn.execute(sa.delete(chunks).where(chunks.c.state_id.in_(state_ids)))
        await self.conn.execute(sa.delete(s).where(s.c.run_id.in_(run_ids)))
        await self.conn.execute(sa.delete(schema.run_counts).where(schema.run_counts.c.run_id.in_(run_ids)))
        await self.conn.execute(sa.delete(r).where(r.c.run_id.in_(run_ids)))
        await self._storage.payload_store.delete_runs(self.conn, run_ids)
        self.runs_deleted.extend(run_ids)
        self.runs_changed.update(run_ids)  # a follower of a deleted run learns that it is gone
        return len(run_ids)

    # -- live streams ----------------------------------------------------------------------------

    async def append_stream_chunks(self, chunks: Sequence[StreamChunkRecord]) -> None:
        """Store chunks of attempts' streams; a chunk already stored at its (state, attempt, position) is
        kept as it was, so a runtime that resends a batch whose answer it lost changes nothing."""
        if not chunks:
            return
        insert = self._insert(schema.stream_chunks).on_conflict_do_nothing(
            index_elements=["state_id", "attempt", "position"]
        )
        await self.conn.execute(insert, [asdict(chunk) for chunk in chunks])
        self.streams_changed.update(chunk.state_id for chunk in chunks)

    async def stream_chunks(self, state_id: str, attempt: int, from_position: int, limit: int) -> list[tuple[int, str]]:
        """(position, text) of one attempt's chunks from `from_position` on, in order (by the primary key)."""
        c = schema.stream_chunks
        query = (
            sa.select(c.c.position, c.c.text)
            .where(c.c.state_id == state_id, c.c.attempt == attempt, c.c.position >= from_position)
            .order_by(c.c.position)
            .limit(limit)
        )
        return [(int(position), text) for position, text in await self.conn.execute(query)]

    # -- cron ------------------------------------------------------------------------------------

    async def replace_cron_schedules(
        self, namespace: str, graph_name: str, schedules: Sequence[CronScheduleRecord]
    ) -> None:
        c = schema.cron_schedules
        await self.conn.execute(sa.delete(c).where(c.c.namespace == namespace, c.c.graph_name == graph_name))
        if schedules:
            await self.conn.execute(sa.insert(c), [asdict(x) for x in schedules])
        self.schedule_changed = True

    async def cron_schedules_of(
        self, namespace: str, graph_name: str, *, for_update: bool = False
    ) -> list[CronScheduleRecord]:
        c = schema.cron_schedules
        query = sa.select(c).where(c.c.namespace == namespace, c.c.graph_name == graph_name)
        if for_update:
            query = query.with_for_update()
        return await self._all(CronScheduleRecord, query)

    async def due_cron_schedules(self, now: int, limit: int) -> list[CronScheduleRecord]:
        c = schema.cron_schedules
        query = (
            sa.select(c)
            .where(c.c.next_fire_at <= now)
            .order_by(c.c.next_fire_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return await self._all(CronScheduleRecord, query)

    async def advance_cron_schedule(self, schedule: CronScheduleRecord, next_fire_at: int) -> bool:
        """Move a schedule to its next occurrence if nobody else did: the compare-and-set makes firing single."""
        c = schema.cron_schedules
        stmt = (
            sa.update(c)
            .where(
                c.c.namespace == schedule.namespace,
                c.c.graph_name == schedule.graph_name,
                c.c.expression == schedule.expression,
                c.c.next_fire_at == schedule.next_fire_at,
            )
            .values(next_fire_at=next_fire_at)
        )
        updated: int = (await self.conn.execute(stmt)).rowcount
        return updated == 1

    async def next_cron_at(self) -> int | None:
        c = schema.cron_schedules
        value = (await self.conn.execute(sa.select(sa.func.min(c.c.next_fire_at)))).scalar_one()
        return int(value) if value is not None else None

    # -- dashboard sessions ----------------------------------------------------------------------

    async def revoke_session(self, token_id: str, expires_at: int) -> None:
        """Record a logged-out session until it would have expired anyway; logging out twice is harmless."""
        stmt = self._insert(schema.revoked_sessions).values(token_id=token_id, expires_at=expires_at)
        await self.conn.execute(stmt.on_conflict_do_nothing())

    async def session_is_revoked(self, token_id: str) -> bool:
        rs = schema.revoked_sessions
        query = sa.select(rs.c.token_id).where(rs.c.token_id == token_id)
        return (await self.conn.execute(query)).first() is not None

    async def delete_expired_session_revocations(self, now: int) -> int:
        """An expired token is refused on its own, so its revocation row can go (by the expiry index)."""
        rs = schema.revoked_sessions
        return int((await self.conn.execute(sa.delete(rs).where(rs.c.expires_at <= now))).rowcount)

    # -- API keys and the audit log ---------------------------------------------------------------

    async def insert_api_key(self, record: ApiKeyRecord) -> None:
        await self.conn.execute(sa.insert(schema.api_keys).values(**asdict(record)))

    async def api_key_by_secret(self, secret_sha256: str) -> ApiKeyRecord | None:
        k = schema.api_keys
        found = await self._all(ApiKeyRecord, sa.select(k).where(k.c.secret_sha256 == secret_sha256))
        return found[0] if found else None

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        k = schema.api_keys
        found = await self._all(ApiKeyRecord, sa.select(k).where(k.c.id == key_id))
        return found[0] if found else None

    async def list_api_keys(self) -> list[ApiKeyRecord]:
        k = schema.api_keys
        return await self._all(ApiKeyRecord, sa.select(k).order_by(k.c.created_at, k.c.id))

    async def revoke_api_key(self, key_id: str, now: int) -> None:
        """Revoking twice keeps the first time."""
        k = schema.api_keys
        await self.conn.execute(sa.update(k).where(k.c.id == key_id, k.c.revoked_at.is_(None)).values(revoked_at=now))

    async def insert_audit_entry(
        self, at: int, key_id: str, key_name: str, role: str, action: str, namespace: str | None, target: str
    ) -> None:
        values = {"at": at, "key_id": key_id, "key_name": key_name, "role": role, "action": action}
        await self.conn.execute(INSERT_AUDIT_ENTRY, {**values, "namespace": namespace, "target": target})

    async def audit_entries(self, limit: int, before: int | None = None) -> list[AuditRecord]:
        """Newest first, by the primary key (so no index beyond it is needed)."""
        a = schema.audit_log
        query = sa.select(a).order_by(a.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(a.c.id < before)
        return await self._all(AuditRecord, query)

    # -- reading runs and namespaces ------------------------------------------------------------

    async def state_counts_by_node(
        self, run_id: str
    ) -> tuple[int, list[tuple[str, str, str, int]], dict[str, UsageTotals]]:
        """The run's version, (identifier, node name, status, count) of its states, and each identifier's
        usage, from `run_counts`; nodes in the order they first appeared, statuses sorted within a node.

        The version is the sum of the revisions written to the run's states, read by the same statement
        as the counts (one snapshot, also on PostgreSQL): counts read at version v are exactly those of
        version v. Its cost depends on the graph's size, not the run's.
        """
        c = schema.run_counts
        query = (
            sa.select(
                c.c.identifier,
                c.c.node_name,
                c.c.status,
                sa.func.sum(c.c.states),
                sa.func.min(c.c.first_created),
                sa.func.sum(c.c.revisions),
                *_USAGE_SUMS,
            )
            .where(c.c.run_id == run_id)
            .group_by(c.c.identifier, c.c.node_name, c.c.status)
        )
        rows = list(await self.conn.execute(query))
        first_seen: dict[str, int] = {}
        usage: dict[str, UsageTotals] = {}
        for identifier, _node, _status, _count, created, _revisions, *used in rows:
            first_seen[identifier] = min(created, first_seen.get(identifier, created))
            usage.setdefault(identifier, UsageTotals()).add(_usage_totals(used))
        rows.sort(key=lambda row: (first_seen[row[0]], row[0], row[2]))
        version = sum(int(row[5]) for row in rows)
        # A status no state is in any more keeps its row (it dates the node, holds revisions and the
        # usage of attempts that ended in it): not listed.
        counts = [(identifier, node, status, int(count)) for identifier, node, status, count, *_ in rows if count]
        return version, counts, usage

    async def namespace_counts(self) -> dict[str, tuple[int, int, int]]:
        """namespace -> (graph templates, runs, registered nodes), for every namespace holding any of them."""
        g, r, n = schema.graphs, schema.runs, schema.registered_nodes
        found: dict[str, list[int]] = {}
        for position, table in enumerate((g, r, n)):
            query = sa.select(table.c.namespace, sa.func.count()).group_by(table.c.namespace)
            for namespace, count in await self.conn.execute(query):
                found.setdefault(namespace, [0, 0, 0])[position] = int(count)
        return {ns: (c[0], c[1], c[2]) for ns, c in sorted(found.items()) if ns}

    def _runs_query(
        self,
        namespace: str,
        graph_name: str | None,
        status: str | None,
        created_from: int | None,
        created_to: int | None,
    ) -> sa.Select[Any]:
        """Runs of a namespace filtered by graph, summary status (as `RunSummary.status`) and creation time."""
        r, c = schema.runs, schema.run_counts
        query = sa.select(r).where(r.c.namespace == namespace)
        if graph_name:
            query = query.where(r.c.graph_name == graph_name)
        if created_from is not None:
            query = query.where(r.c.created_at >= created_from)
        if created_to is not None:
            query = query.where(r.c.created_at < created_to)
        if status:

            def any_state(statuses: Collection[str] = ()) -> sa.Exists:
                # From the run's counts, not its states: a few rows whatever the run's size.
                where = [c.c.run_id == r.c.run_id]
                if statuses:
                    where.append(c.c.status.in_(status_values(statuses)))
                found = sa.select(sa.literal(1)).where(*where).group_by(c.c.status).having(sa.func.sum(c.c.states) > 0)
                return sa.exists(found)

            # `exospherehost.statuses.run_status` in SQL.
            pending, cancelled = any_state(PENDING), any_state(CANCELLED)
            query = query.where(
                {
                    RunStatus.PENDING: pending,
                    RunStatus.CANCELLED: sa.and_(~pending, cancelled),
                    RunStatus.FAILED: sa.and_(~pending, ~cancelled, sa.or_(any_state(FAILED), ~any_state())),
                    RunStatus.SUCCESS: sa.and_(~pending, ~cancelled, ~any_state(FAILED), any_state()),
                }[RunStatus(status)]
            )
        return query

    async def find_runs(
        self,
        namespace: str,
        *,
        graph_name: str | None,
        status: str | None,
        created_from: int | None,
        created_to: int | None,
        offset: int,
        limit: int,
    ) -> tuple[int, list[RunRecord]]:
        """One page of runs, newest first, and how many match in all."""
        r = schema.runs
        query = self._runs_query(namespace, graph_name, status, created_from, created_to)
        total = (await self.conn.execute(sa.select(sa.func.count()).select_from(query.subquery()))).scalar_one()
        page = query.order_by(r.c.created_at.desc(), r.c.run_id.desc()).offset(offset).limit(limit)
        return int(total), await self._all(RunRecord, page)

    async def states_of_node(
        self, run_id: str, identifier: str, statuses: Sequence[str], offset: int, limit: int
    ) -> tuple[int, list[StateRecord]]:
        """One page of a template node's states in a run (oldest first), optionally only some statuses."""
        s = schema.states
        where = [s.c.run_id == run_id, s.c.identifier == identifier]
        if statuses:
            where.append(s.c.status.in_(statuses))
        total = (await self.conn.execute(sa.select(sa.func.count()).select_from(s).where(*where))).scalar_one()
        page = sa.select(s).where(*where).order_by(s.c.created_at, s.c.id).offset(offset).limit(limit)
        return int(total), await self._all(StateRecord, page)

    async def run_finish_times(self, run_ids: Sequence[str]) -> dict[str, int]:
        """run id -> when its latest state ended, for the runs with an ended state (by the run index)."""
        if not run_ids:
            return {}
        s = schema.states
        query = (
            sa.select(s.c.run_id, sa.func.max(s.c.finished_at))
            .where(s.c.run_id.in_(run_ids), s.c.finished_at.is_not(None))
            .group_by(s.c.run_id)
        )
        return {run_id: int(end) for run_id, end in await self.conn.execute(query) if end is not None}

    async def failed_states_of_run(self, run_id: str, limit: int) -> tuple[int, list[StateRecord]]:
        """How many of a run's states failed for good, and the first `limit` of them (oldest first)."""
        s = schema.states
        where = (s.c.run_id == run_id, s.c.status.in_(status_values(FAILED)))
        total = (await self.conn.execute(sa.select(sa.func.count()).select_from(s).where(*where))).scalar_one()
        page = sa.select(s).where(*where).order_by(s.c.created_at, s.c.id).limit(limit)
        return int(total), await self._all(StateRecord, page)

    async def attempts_of_run(self, run_id: str, limit: int) -> tuple[int, list[AttemptRecord]]:
        """How many of a run's states were ever claimed, and the first `limit` of them by claim time: one
        row per attempt (a retry is a state of its own), only the columns a timeline draws."""
        s = schema.states
        where = (s.c.run_id == run_id, s.c.started_at.is_not(None))
        total = (await self.conn.execute(sa.select(sa.func.count()).select_from(s).where(*where))).scalar_one()
        columns = [getattr(s.c, f.name) for f in fields(AttemptRecord)]
        page = sa.select(*columns).where(*where).order_by(s.c.started_at, s.c.id).limit(limit)
        return int(total), await self._all(AttemptRecord, page)

    async def states_at_same_position(self, state: StateRecord, limit: int) -> list[StateRecord]:
        """States of the same node under the same parent (retries, manual retries, fan-out siblings), oldest first."""
        s, a = schema.states, schema.state_ancestors
        query = sa.select(s).where(s.c.run_id == state.run_id, s.c.identifier == state.identifier)
        if state.parents:
            parent_id = list(state.parents.values())[-1]
            query = query.where(s.c.id.in_(sa.select(a.c.state_id).where(a.c.ancestor_id == parent_id)))
        found = await self._all(StateRecord, query.order_by(s.c.created_at, s.c.id).limit(limit))
        return [other for other in found if other.parents == state.parents]


class StorageListener(Protocol):
    """What the engine wants to hear from storage after each commit."""

    def states_ready(self, ready: Mapping[ReadyKey, int | None]) -> None: ...
    def wake_everyone(self) -> None: ...
    def schedule_changed(self) -> None: ...
    def runs_changed(self, run_ids: set[str], pending_change: Mapping[str, int]) -> None: ...
    def every_run_changed(self) -> None: ...
    def streams_changed(self, state_ids: set[str] | None) -> None: ...
    def lease_granted(self, deadline_ms: int) -> None: ...
    def runs_and_attempts(self, started: list[RunRecord], ended: list[StateRecord]) -> None: ...


class _NoListener:
    def states_ready(self, ready: Mapping[ReadyKey, int | None]) -> None: ...
    def wake_everyone(self) -> None: ...
    def schedule_changed(self) -> None: ...
    def runs_changed(self, run_ids: set[str], pending_change: Mapping[str, int]) -> None: ...
    def every_run_changed(self) -> None: ...
    def streams_changed(self, state_ids: set[str] | None) -> None: ...
    def lease_granted(self, deadline_ms: int) -> None: ...
    def runs_and_attempts(self, started: list[RunRecord], ended: list[StateRecord]) -> None: ...


class Storage(abc.ABC):
    """A database the server keeps everything in. Subclasses: `SqliteStorage`, `PostgresStorage`."""

    def __init__(self) -> None:
        self.listener: StorageListener = _NoListener()
        self._add_counts: Any = None
        self._add_descendant_counts: Any = None
        self._plain_statements: dict[int, PlainStatement] = {}
        # Rows per driver call of `Tx._write_plain`: PostgreSQL's driver binds them on the event loop.
        self.plain_rows_per_call = ROWS_PER_STATEMENT
        self._take_trigger_key: Any = None
        # Whether transactions collect started runs and ended claims for the listener (traces on).
        self.track_attempts = False
        # Large inputs and outputs: where they are kept apart from the rows, and the sizes that decide.
        self.payload_settings = payloads.PayloadSettings()
        self.payload_store: payloads.PayloadStore = payloads.TablePayloadStore()
        # Run inside every write transaction before its commit, in order (`add_commit_step`).
        self._commit_steps: list[Callable[[Tx], Awaitable[None]]] = []

    def add_commit_step(self, step: Callable[[Tx], Awaitable[None]]) -> None:
        """Run `step` at the end of every write transaction, inside it: what the engine must do in the
        same commit as whatever a transaction did (start and finish child runs), wherever it was done."""
        self._commit_steps.append(step)

    def subscribe(self, listener: StorageListener) -> None:
        """Hear what committed transactions did: here, and on PostgreSQL on every replica (ready work,
        schedule changes, changed runs)."""
        self.listener = listener

    @abc.abstractmethod
    def dialect_insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct, which knows ON CONFLICT."""

    @property
    @abc.abstractmethod
    def sql_dialect(self) -> sa.Dialect:
        """The SQLAlchemy dialect of the database (its parameter style and quoting)."""

    async def copy_rows(
        self, conn: Any, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> bool:
        """Load rows of plain values (`columns` in order, JSON as text) into `table` inside the transaction of
        `conn` by the database's bulk path; False when it has none (the caller then inserts them)."""
        return False

    def plain_sql(self, statement: Any) -> PlainStatement:
        """`statement` compiled once for this database, for `Tx._write_plain`."""
        plain = self._plain_statements.get(id(statement))
        if plain is None or plain.statement is not statement:
            compiled = statement.compile(dialect=self.sql_dialect)
            plain = PlainStatement(statement, compiled.string, tuple(compiled.positiontup or ()), compiled.params)
            self._plain_statements[id(statement)] = plain
        return plain

    def add_counts_statement(self) -> Any:
        """`INSERT INTO run_counts ... ON CONFLICT DO UPDATE` adding to the counts in place (built once)."""
        if self._add_counts is None:
            c = schema.run_counts
            insert = self.dialect_insert(c)
            self._add_counts = insert.on_conflict_do_update(
                index_elements=["run_id", "identifier", "status", "shard"],
                set_={
                    "states": c.c.states + insert.excluded.states,
                    "revisions": c.c.revisions + insert.excluded.revisions,
                    **{name: c.c[name] + insert.excluded[name] for name in USAGE_FIELDS},
                },
            )
        return self._add_counts

    def take_trigger_key_statement(self) -> Any:
        """`INSERT INTO trigger_keys ... ON CONFLICT DO NOTHING` (built once)."""
        if self._take_trigger_key is None:
            self._take_trigger_key = self.dialect_insert(schema.trigger_keys).on_conflict_do_nothing()
        return self._take_trigger_key

    def add_descendant_counts_statement(self) -> Any:
        """`INSERT INTO descendant_counts ... ON CONFLICT DO UPDATE` adding in place (built once)."""
        if self._add_descendant_counts is None:
            d = schema.descendant_counts
            insert = self.dialect_insert(d)
            self._add_descendant_counts = insert.on_conflict_do_update(
                index_elements=["ancestor_id", "status", "shard"], set_={"states": d.c.states + insert.excluded.states}
            )
        return self._add_descendant_counts

    @abc.abstractmethod
    async def start(self) -> None:
        """Migrate the schema and start whatever the dialect needs to hear other replicas."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every connection."""

    @abc.abstractmethod
    def _begin(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection inside a write transaction (committed on exit, rolled back on error)."""

    @abc.abstractmethod
    def _connect(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A connection for reads."""

    @asynccontextmanager
    async def transaction(self, *, durable: bool = True) -> AsyncIterator[Tx]:
        """A write transaction: everything inside commits together or not at all.

        `durable=False` lets PostgreSQL acknowledge the commit before its WAL reaches disk. Only for
        writes whose loss in a database crash is harmless: a claim or heartbeat that vanishes leaves
        the state claimable again, which at-least-once delivery already allows.
        """
        async with self._begin() as conn:
            if not durable:
                await self._relax_durability(conn)
            tx = Tx(conn, self)
            yield tx
            for step in self._commit_steps:
                await step(tx)
            await tx.write_counts()
            await self._before_commit(tx)
        self._after_commit(tx)

    @asynccontextmanager
    async def reader(self) -> AsyncIterator[Tx]:
        """A read-only unit of work; never blocks writers."""
        async with self._connect() as conn:
            yield Tx(conn, self)

    async def claim(
        self,
        namespace: str,
        node_names: Sequence[str],
        limit: int,
        lease_id: str,
        lease_ms: int,
        claimant: Claimant = (None, None),
    ) -> list[StateRecord]:
        """Claim ready states (one statement). Not durable: a claim lost in a database crash leaves the
        state claimable again, which at-least-once delivery allows."""
        async with self.transaction(durable=False) as tx:
            return await tx.claim_states(namespace, node_names, limit, lease_id, lease_ms, claimant)

    async def claim_limited(
        self,
        namespace: str,
        node_names: Sequence[str],
        limit: int,
        lease_id: str,
        lease_ms: int,
        claimant: Claimant = (None, None),
    ) -> tuple[list[StateRecord], int | None]:
        """Claim ready states with limits (`Tx.claim_limited_states`); not durable, as `claim`."""
        async with self.transaction(durable=False) as tx:
            return await tx.claim_limited_states(namespace, node_names, limit, lease_id, lease_ms, claimant)

    async def _relax_durability(self, conn: Any) -> None:
        return None

    async def _before_commit(self, tx: Tx) -> None:
        return None

    def _after_commit(self, tx: Tx) -> None:
        if tx.runs_deleted:
            self.payload_store.runs_deleted(tx.runs_deleted)
        if tx.ready:
            self.listener.states_ready(tx.ready)
        if tx.schedule_changed:
            self.listener.schedule_changed()
        if tx.runs_changed:
            self.listener.runs_changed(tx.runs_changed, tx.pending_change)
        if tx.streams_changed:
            self.listener.streams_changed(tx.streams_changed)
        if tx.runs_started or tx.attempts_ended:
            self.listener.runs_and_attempts(tx.runs_started, tx.attempts_ended)
        if tx.earliest_lease is not None:
            # Only this replica's scheduler hears it: it expires the leases it granted; the others
            # look again within their longest sleep should this replica die.
            self.listener.lease_granted(tx.earliest_lease)

    async def ping(self) -> None:
        async with self.reader() as tx:
            await tx.conn.execute(sa.text("SELECT 1"))
