"""PostgreSQL for production: pooled connections, SKIP LOCKED claims, LISTEN/NOTIFY across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from exospherehost.statuses import StateStatus
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from exosphere_server.storage import schema
from exosphere_server.storage.base import CLAIM_STATES, Claimant, Storage, Tx, decode_json, encode_json
from exosphere_server.storage.migrate import upgrade_to_head
from exosphere_server.storage.plain_inserts import plain_insert
from exosphere_server.storage.records import StateRecord

CHANNEL = "exosphere_wakeup"
SCHEDULE_PAYLOAD = "schedule"
EVERYONE_PAYLOAD = "*"  # wake every claimer: for names too long for a NOTIFY payload (8000 bytes)
MAX_PAYLOAD_BYTES = 7900
# Changed runs: "<replica>\x1e<run id>,<run id>,..." or "<replica>\x1e*" (every run: too many for one
# payload). The sending replica has already told its own followers, so it skips its own payloads.
RUNS_CHANNEL = "exosphere_runs"
EVERY_RUN = "*"
# Ready work: "<replica>\x1e<how many>\x1e<namespace>\x1f<node>". The sender has fed its own claimers
# already and skips its payloads; the others wake as many of theirs as that many states can feed.
# (Servers before this channel sent "<namespace>\x1f<node>" on CHANNEL; such payloads still wake every
# claimer of the node. Those older servers do not listen here: during a rolling upgrade their
# claimers learn of work made ready by newer replicas when their long-poll ends.)
READY_CHANNEL = "exosphere_ready"
# Live streams that got chunks: "<replica>\x1e<state id>,<state id>,..." or "<replica>\x1e*" (too many
# to name). As for runs, the sender has told its own readers and skips its payloads.
STREAMS_CHANNEL = "exosphere_streams"
COPY_PIECE = 2000  # rows per COPY (`PostgresStorage.copy_rows`)
log = structlog.get_logger("exosphere.storage")


class _Written:
    """What a write run on the driver answers: how many rows it changed (-1: not known, for many rows)."""

    def __init__(self, rowcount: int) -> None:
        self.rowcount = rowcount


def _rowcount(status: str) -> int:
    """The row count in a command tag (`INSERT 0 1`, `UPDATE 3`), as SQLAlchemy reads it."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else -1


class _DriverConnection:
    """SQLAlchemy's connection of one transaction, whose plain writes run straight on asyncpg.

    Through SQLAlchemy every statement crosses its asyncio adaptation (a greenlet hop each way) and its
    execution layer: about a tenth of a millisecond of Python, as much as the round trip itself. Plain
    INSERTs given rows as dicts (`plain_inserts`), batches of plain rows (`Tx._write_plain`: counts,
    results) and NOTIFY go to the driver connection instead, prepared once per connection by asyncpg's
    statement cache. The transaction is still SQLAlchemy's (begun before the first write, committed or
    rolled back by it), and driver errors are raised as SQLAlchemy raises them, so a lost connection is
    still a 503 and its connection is dropped from the pool on rollback. Anything else (reads, RETURNING,
    updates of a statement's own) goes through SQLAlchemy as before.
    """

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._adapted: Any = None  # SQLAlchemy's adaptation of the asyncpg connection, once looked up

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def driver(self) -> asyncpg.Connection:
        """The asyncpg connection, inside the transaction (begun here, as SQLAlchemy's adapter would
        before its first statement, when no statement ran yet)."""
        adapted = self._adapted
        if adapted is None:
            adapted = self._adapted = (await self._conn.get_raw_connection()).dbapi_connection
        if adapted._transaction is None and not adapted.autocommit:
            await adapted._start_transaction()
        connection: asyncpg.Connection = adapted._connection
        return connection

    async def _error(self, exc: Exception, sql: str, parameters: Any) -> Exception:
        """`exc` of asyncpg as SQLAlchemy would raise it: the adapter's translation, then `DBAPIError`'s.

        A connection the error closed is invalidated, as SQLAlchemy does on a disconnect: the pool drops it
        instead of handing it to the next transaction, and the error says so (the API answers 503). asyncpg
        can report a connection lost under `executemany` as an internal error, so the test is whether the
        connection is closed, not the error's class.
        """
        dbapi = self._conn.dialect.loaded_dbapi
        lost = self._adapted._connection.is_closed()
        if lost:
            await self._conn.invalidate(exc)
        try:
            self._adapted._handle_exception(exc)
        except dbapi.Error as translated:
            return sa.exc.DBAPIError.instance(sql, parameters, translated, dbapi.Error, connection_invalidated=lost)
        except Exception as other:  # connection errors (OSError) pass untranslated, as through SQLAlchemy
            return other
        return exc

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        plain = plain_insert(statement, parameters, self._conn.dialect)
        if plain is None:
            return await self._conn.execute(statement, parameters)
        driver = await self.driver()
        try:
            if isinstance(parameters, list) and len(parameters) > 1:
                await driver.executemany(plain.sql, [plain.row(p) for p in parameters])
                return _Written(-1)
            row = plain.row(parameters[0] if isinstance(parameters, list) else parameters)
            return _Written(_rowcount(await driver.execute(plain.sql, *row)))
        except Exception as exc:
            raise await self._error(exc, plain.sql, parameters) from exc

    async def exec_driver_sql(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """`executemany` of plain SQL (`$n` parameters, JSON as text) on the driver."""
        driver = await self.driver()
        try:
            if len(rows) == 1:
                await driver.execute(sql, *rows[0])  # one round trip, without executemany's batch set-up
            else:
                await driver.executemany(sql, rows)
        except Exception as exc:
            raise await self._error(exc, sql, rows) from exc

    async def notify(self, notifications: list[tuple[str, str]]) -> None:
        """Send every (channel, payload) in one statement: one round trip however many there are."""
        calls = ", ".join(f"pg_notify(${2 * i + 1}, ${2 * i + 2})" for i in range(len(notifications)))
        values = [value for pair in notifications for value in pair]
        driver = await self.driver()
        try:
            await driver.execute(f"SELECT {calls}", *values)
        except Exception as exc:
            raise await self._error(exc, calls, values) from exc


def _asyncpg_dsn(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _claim_and_count() -> Any:
    """`CLAIM_STATES` and the claims' `run_counts` and `descendant_counts` changes in one statement
    (data-modifying CTEs), so that the autocommitted claim stays one round trip and the counts can
    never miss it.

    Per (run, node) and per ancestor kept in `state_ancestors` but `uncounted_parent`: CREATED loses,
    QUEUED gains the states claimed, added to the claims' shard (`schema.CLAIM_SHARD`), in key order.
    """
    claimed = CLAIM_STATES.cte("claimed")
    c = schema.run_counts

    def side(status: str, sign: int, revisions: int) -> sa.Select[Any]:
        return sa.select(
            claimed.c.run_id,
            claimed.c.identifier,
            sa.literal(status, sa.String).label("status"),
            sa.bindparam("b_shard", type_=sa.Integer).label("shard"),
            sa.func.min(claimed.c.node_name).label("node_name"),
            (sa.func.count() * sign).label("states"),
            (sa.func.count() * revisions).label("revisions"),
            sa.func.min(claimed.c.created_at).label("first_created"),
        ).group_by(claimed.c.run_id, claimed.c.identifier)

    moves = sa.union_all(side(StateStatus.CREATED.value, -1, 0), side(StateStatus.QUEUED.value, 1, 1)).subquery()
    columns = ["run_id", "identifier", "status", "shard", "node_name", "states", "revisions", "first_created"]
    ordered = sa.select(*(moves.c[name] for name in columns)).order_by(
        moves.c.run_id, moves.c.identifier, moves.c.status
    )
    insert = pg_insert(c).from_select(columns, ordered)
    counted = insert.on_conflict_do_update(
        index_elements=["run_id", "identifier", "status", "shard"],
        set_={"states": c.c.states + insert.excluded.states, "revisions": c.c.revisions + insert.excluded.revisions},
    ).cte("counted")

    a, d = schema.state_ancestors, schema.descendant_counts
    # As `Tx.count_change`: not under the ancestor a claimed state is not counted for (no unite asks).
    below = claimed.join(
        a, sa.and_(a.c.state_id == claimed.c.id, a.c.ancestor_id.is_distinct_from(claimed.c.uncounted_parent))
    )

    def descendants(status: str, sign: int) -> sa.Select[Any]:
        return (
            sa.select(
                a.c.ancestor_id,
                sa.literal(status, sa.String).label("status"),
                sa.bindparam("b_shard", type_=sa.Integer).label("shard"),
                (sa.func.count() * sign).label("states"),
            )
            .select_from(below)
            .group_by(a.c.ancestor_id)
        )

    moved = sa.union_all(
        descendants(StateStatus.CREATED.value, -1), descendants(StateStatus.QUEUED.value, 1)
    ).subquery()
    names = ["ancestor_id", "status", "shard", "states"]
    in_order = sa.select(*(moved.c[name] for name in names)).order_by(moved.c.ancestor_id, moved.c.status)
    add = pg_insert(d).from_select(names, in_order)
    counted_below = add.on_conflict_do_update(
        index_elements=["ancestor_id", "status", "shard"], set_={"states": d.c.states + add.excluded.states}
    ).cte("counted_below")
    return sa.select(claimed).add_cte(counted).add_cte(counted_below)


CLAIM_AND_COUNT = _claim_and_count()


class PostgresStorage(Storage):
    def __init__(self, url: str, pool_size: int = 10) -> None:
        self.dsn = _asyncpg_dsn(url)
        super().__init__()
        self.engine = create_async_engine(
            "postgresql+asyncpg://" + self.dsn.split("://", 1)[1],
            pool_size=pool_size,
            max_overflow=pool_size,
            json_serializer=encode_json,
            json_deserializer=decode_json,
            # No ping per checkout (a round trip per transaction): a connection found dead fails one
            # request with a 503, which clients retry, and SQLAlchemy then renews the whole pool.
            connect_args={"server_settings": {"statement_timeout": "30000", "application_name": "exosphere"}},
        )
        # Claims are one statement: run them in autocommit on their own small pool, without waiting for
        # the WAL flush (Storage.claim says why that is safe). One round trip instead of four.
        self._claims = create_async_engine(
            "postgresql+asyncpg://" + self.dsn.split("://", 1)[1],
            pool_size=max(2, pool_size // 2),
            max_overflow=pool_size,
            isolation_level="AUTOCOMMIT",
            json_deserializer=decode_json,
            connect_args={
                "server_settings": {
                    "statement_timeout": "30000",
                    "application_name": "exosphere-claims",
                    "synchronous_commit": "off",
                }
            },
        )
        self._listener: asyncio.Task[None] | None = None
        self.replica_id = secrets.token_hex(8)

    def dialect_insert(self, table: sa.Table) -> Any:
        return pg_insert(table)

    @property
    def sql_dialect(self) -> sa.Dialect:
        return self.engine.dialect

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[_DriverConnection]:
        async with self.engine.begin() as conn:
            yield _DriverConnection(conn)

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Any]:
        """Reads in autocommit: under READ COMMITTED every statement takes its own snapshot inside a
        transaction too, so the `BEGIN` and `ROLLBACK` around a read were two round trips that bought
        nothing (three for the run feed's one-statement read of a run's counts)."""
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    async def start(self) -> None:
        await self._migrate_locked()
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(ready))
        await asyncio.wait_for(ready.wait(), timeout=30)

    async def _migrate_locked(self) -> None:
        """Two replicas starting together must not both run the migrations."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT pg_advisory_lock(727274)"))
            await conn.commit()
            try:
                await upgrade_to_head(self.engine)
            finally:
                await conn.execute(sa.text("SELECT pg_advisory_unlock(727274)"))
                await conn.commit()

    async def claim(
        self,
        namespace: str,
        node_names: Sequence[str],
        limit: int,
        lease_id: str,
        lease_ms: int,
        claimant: Claimant = (None, None),
    ) -> list[StateRecord]:
        async with self._claims.connect() as sa_conn:
            conn = _DriverConnection(sa_conn)
            tx = Tx(conn, self)
            claimed = await tx.claim_states(
                namespace, node_names, limit, lease_id, lease_ms, claimant, counting_claim=CLAIM_AND_COUNT
            )
            if claimed:
                # Autocommit: the claim has committed, so this second statement tells the other
                # replicas' followers that these runs moved (CREATED -> QUEUED).
                await self._notify(conn, self._run_payloads(tx.runs_changed))
        self._after_commit(tx)
        return claimed

    async def ping(self) -> None:
        """`SELECT 1` in one round trip: in autocommit, without the BEGIN before it and the ROLLBACK after
        it that a pooled connection's transaction costs. During a busy drain every round trip waits for a
        database backend's turn on the CPU, and the three of a transaction were half of `/health`'s slowest answers."""
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("SELECT 1")

    async def copy_rows(
        self, conn: Any, table: sa.Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
    ) -> bool:
        """COPY in pieces of `COPY_PIECE` rows: asyncpg encodes a piece on the event loop, a few milliseconds
        each, and the loop serves other requests between two pieces."""
        driver = await conn.driver()  # inside the transaction, which the COPY must join
        for start in range(0, len(rows), COPY_PIECE):
            await driver.copy_records_to_table(
                table.name, records=rows[start : start + COPY_PIECE], columns=list(columns)
            )
        return True

    async def _relax_durability(self, conn: Any) -> None:
        await conn.execute(sa.text("SET LOCAL synchronous_commit = off"))

    async def _before_commit(self, tx: Tx) -> None:
        # NOTIFY is delivered at commit, to every replica, and dropped on rollback.
        ready: list[tuple[str, str]] = []
        for (ns, node), count in sorted(tx.ready.items()):
            payload = f"{self.replica_id}\x1e{count}\x1e{ns}\x1f{node}"
            ready.append(
                (READY_CHANNEL, payload) if len(payload.encode()) <= MAX_PAYLOAD_BYTES else (CHANNEL, EVERYONE_PAYLOAD)
            )
        if tx.schedule_changed:
            ready.append((CHANNEL, SCHEDULE_PAYLOAD))
        changed = self._id_payloads(RUNS_CHANNEL, tx.runs_changed) + self._id_payloads(
            STREAMS_CHANNEL, tx.streams_changed
        )
        await self._notify(tx.conn, ready + changed)

    def _run_payloads(self, run_ids: Iterable[str]) -> list[tuple[str, str]]:
        return self._id_payloads(RUNS_CHANNEL, run_ids)

    def _id_payloads(self, channel: str, object_ids: Iterable[str]) -> list[tuple[str, str]]:
        ids = ",".join(sorted(object_ids))
        if not ids:
            return []
        if len(ids.encode()) > MAX_PAYLOAD_BYTES - len(self.replica_id) - 1:
            ids = EVERY_RUN
        return [(channel, f"{self.replica_id}\x1e{ids}")]

    @staticmethod
    async def _notify(conn: _DriverConnection, notifications: list[tuple[str, str]]) -> None:
        if notifications:
            await conn.notify(notifications)

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == SCHEDULE_PAYLOAD:
            self.listener.schedule_changed()
        elif payload == EVERYONE_PAYLOAD:
            self.listener.wake_everyone()
        else:
            # An older server's ready work, "<namespace>\x1f<node>": how many is not said, so wake every claimer.
            namespace, _, node = payload.partition("\x1f")
            self.listener.states_ready({(namespace, node): None})

    def _on_ready_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        replica, _, rest = payload.partition("\x1e")
        if replica == self.replica_id:
            return  # this replica's own commit: its claimers were fed in-process (_after_commit)
        count, _, key = rest.partition("\x1e")
        namespace, _, node = key.partition("\x1f")
        self.listener.states_ready({(namespace, node): int(count) if count.isdigit() else None})

    def _on_runs_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        replica, _, ids = payload.partition("\x1e")
        if replica == self.replica_id:
            return  # this replica's own commit, announced in-process already (_after_commit)
        if ids == EVERY_RUN:
            self.listener.every_run_changed()
        elif ids:
            self.listener.runs_changed(set(ids.split(",")), {})  # how many states ended is not said

    def _on_streams_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        replica, _, ids = payload.partition("\x1e")
        if replica == self.replica_id:
            return  # this replica's own commit, announced in-process already (_after_commit)
        self.listener.streams_changed(None if ids == EVERY_RUN else set(ids.split(",")))

    async def _listen(self, ready: asyncio.Event) -> None:
        """Hold one LISTEN connection; reconnect with backoff when the database goes away."""
        delay = 0.2
        connected_before = False
        while True:
            try:
                conn = await asyncpg.connect(self.dsn)
                try:
                    await conn.add_listener(CHANNEL, self._on_notification)
                    await conn.add_listener(RUNS_CHANNEL, self._on_runs_notification)
                    await conn.add_listener(READY_CHANNEL, self._on_ready_notification)
                    await conn.add_listener(STREAMS_CHANNEL, self._on_streams_notification)
                    ready.set()
                    delay = 0.2
                    if connected_before:
                        # The database went away: pooled connections are likely dead too, and
                        # notifications sent meanwhile were lost, so renew the pool and wake everyone.
                        await self.engine.dispose()
                        await self._claims.dispose()
                        self.listener.wake_everyone()
                        self.listener.schedule_changed()
                        self.listener.every_run_changed()
                        self.listener.streams_changed(None)
                    connected_before = True
                    while not conn.is_closed():
                        await asyncio.sleep(1)
                        await conn.execute("SELECT 1", timeout=5)
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("listen_connection_lost", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.engine.dispose()
        await self._claims.dispose()
