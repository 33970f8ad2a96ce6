"""Named queries of limits: definitions, buckets (locked in key order), concurrency holds, pauses.

The claim of limited states itself is `Tx.claim_limited_states` (it moves states, which only `Tx`
does); it reads and writes through these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from typing import Any

import sqlalchemy as sa

from exosphere_server.storage import schema
from exosphere_server.storage.limit_buckets import BucketKey, full_bucket
from exosphere_server.storage.records import BucketRecord, LimitRecord

_L, _B, _H, _C = schema.limits, schema.limit_buckets, schema.limit_holds, schema.limit_corrections
Insert = Callable[[sa.Table], Any]


def _limit(row: Any) -> LimitRecord:
    return LimitRecord(**{f.name: row._mapping[f.name] for f in fields(LimitRecord)})


def _bucket(row: Any) -> BucketRecord:
    return BucketRecord(**{f.name: row._mapping[f.name] for f in fields(BucketRecord)})


async def limits_named(conn: Any, namespace: str, names: Iterable[str]) -> dict[str, LimitRecord]:
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await conn.execute(sa.select(_L).where(_L.c.namespace == namespace, _L.c.name.in_(wanted)))
    return {row.name: _limit(row) for row in rows}


async def list_limits(conn: Any, namespace: str) -> list[LimitRecord]:
    rows = await conn.execute(sa.select(_L).where(_L.c.namespace == namespace).order_by(_L.c.name))
    return [_limit(row) for row in rows]


async def put_limit(conn: Any, insert: Insert, record: LimitRecord) -> None:
    """Create or replace a limit's budgets; its buckets keep what is left (capped by the next refill)."""
    values = {f.name: getattr(record, f.name) for f in fields(LimitRecord)}
    changed = {k: values[k] for k in ("concurrency", "requests_per_minute", "tokens_per_minute", "updated_at")}
    await conn.execute(
        insert(_L).values(**values).on_conflict_do_update(index_elements=["namespace", "name"], set_=changed)
    )


async def delete_limit(conn: Any, namespace: str, name: str) -> bool:
    deleted = await conn.execute(sa.delete(_L).where(_L.c.namespace == namespace, _L.c.name == name))
    await conn.execute(sa.delete(_B).where(_B.c.namespace == namespace, _B.c.name == name))
    return bool(deleted.rowcount)


async def lock_buckets(
    conn: Any, insert: Insert, namespace: str, keys: Sequence[BucketKey], limits: Mapping[str, LimitRecord], now: int
) -> dict[BucketKey, BucketRecord]:
    """The buckets of `keys`, created full when new, locked in key order (one global order: no deadlock)."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    found = await _locked(conn, namespace, ordered)
    missing = [key for key in ordered if key not in found]
    if missing:  # new buckets: created full, then locked too (after the others: still in one order per claim)
        fresh = [vars(full_bucket(namespace, key, limits.get(key[0]), now)) for key in missing]
        await conn.execute(insert(_B).on_conflict_do_nothing(index_elements=["namespace", "name", "key"]), fresh)
        found.update(await _locked(conn, namespace, missing))
    return found


async def _locked(conn: Any, namespace: str, keys: Sequence[BucketKey]) -> dict[BucketKey, BucketRecord]:
    query = (
        sa.select(_B)
        .where(_B.c.namespace == namespace, sa.tuple_(_B.c.name, _B.c.key).in_(keys))
        .order_by(_B.c.name, _B.c.key)
        .with_for_update()
    )
    return {(row.name, row.key): _bucket(row) for row in await conn.execute(query)}


async def save_buckets(conn: Any, buckets: Iterable[BucketRecord]) -> None:
    rows = [
        {
            "b_ns": b.namespace,
            "b_name": b.name,
            "b_key": b.key,
            "b_requests": b.requests,
            "b_tokens": b.tokens,
            "b_refilled_at": b.refilled_at,
        }
        for b in sorted(buckets, key=lambda b: (b.name, b.key))
    ]
    if rows:
        await conn.execute(SAVE_BUCKET, rows)


SAVE_BUCKET = (
    sa.update(_B)
    .where(
        _B.c.namespace == sa.bindparam("b_ns"), _B.c.name == sa.bindparam("b_name"), _B.c.key == sa.bindparam("b_key")
    )
    .values(
        requests=sa.bindparam("b_requests"), tokens=sa.bindparam("b_tokens"), refilled_at=sa.bindparam("b_refilled_at")
    )
)


async def held_counts(conn: Any, namespace: str, keys: Sequence[BucketKey]) -> dict[BucketKey, int]:
    """How many claimed states hold each of these buckets (each at most its cap: a cheap count)."""
    if not keys:
        return {}
    query = (
        sa.select(_H.c.name, _H.c.key, sa.func.count())
        .where(_H.c.namespace == namespace, sa.tuple_(_H.c.name, _H.c.key).in_(sorted(set(keys))))
        .group_by(_H.c.name, _H.c.key)
    )
    return {(name, key): int(count) for name, key, count in await conn.execute(query)}


async def add_holds(conn: Any, namespace: str, holds: Sequence[tuple[str, BucketKey]]) -> None:
    if holds:
        rows = [{"state_id": s, "name": k[0], "key": k[1], "namespace": namespace} for s, k in holds]
        await conn.execute(sa.insert(_H), rows)


async def release_holds(conn: Any, state_ids: Sequence[str]) -> None:
    if state_ids:
        await conn.execute(sa.delete(_H).where(_H.c.state_id.in_(sorted(set(state_ids)))))


def _later(column: Any, at: int) -> Any:
    return sa.case((column < at, at), else_=column)


async def pause(conn: Any, insert: Insert, namespace: str, name: str, key: str | None, until: int) -> None:
    """Hand out nothing of the limit (or of its one key's bucket) before `until`, and start again from an
    empty bucket then: a provider that just said 429 gets no burst the moment the pause ends."""
    row = {
        "namespace": namespace,
        "name": name,
        "key": key or "",
        "requests": 0.0,
        "tokens": 0.0,
        "refilled_at": until,
        "paused_until": until,
    }
    await conn.execute(insert(_B).values(**row).on_conflict_do_nothing(index_elements=["namespace", "name", "key"]))
    where = [_B.c.namespace == namespace, _B.c.name == name]
    if key is None:  # every bucket of the limit, and those of keys not seen yet (the limit's own pause)
        await conn.execute(
            sa.update(_L)
            .where(_L.c.namespace == namespace, _L.c.name == name)
            .values(paused_until=_later(_L.c.paused_until, until))
        )
    else:
        where.append(_B.c.key == key)
    # Lock the rows in key order first, as claims do: an UPDATE alone locks in scan order, which could
    # cross a claim's order and deadlock.
    await conn.execute(sa.select(_B.c.key).where(*where).order_by(_B.c.name, _B.c.key).with_for_update())
    await conn.execute(
        sa.update(_B)
        .where(*where)
        .values(
            paused_until=_later(_B.c.paused_until, until),
            refilled_at=_later(_B.c.refilled_at, until),
            requests=sa.case((_B.c.requests > 0, 0.0), else_=_B.c.requests),
            tokens=sa.case((_B.c.tokens > 0, 0.0), else_=_B.c.tokens),
        )
    )


async def add_corrections(conn: Any, namespace: str, corrections: Sequence[tuple[BucketKey, float]]) -> None:
    """Note tokens to take from (or give back to, when negative) buckets, for their next claim to apply."""
    rows = [{"namespace": namespace, "name": k[0], "key": k[1], "tokens": t} for k, t in corrections if t]
    if rows:
        await conn.execute(sa.insert(_C), rows)


async def take_corrections(conn: Any, namespace: str, keys: Sequence[BucketKey]) -> dict[BucketKey, float]:
    """The corrections noted for these (locked) buckets, summed, and deleted: each is applied once."""
    if not keys:
        return {}
    deleted = await conn.execute(
        sa.delete(_C)
        .where(_C.c.namespace == namespace, sa.tuple_(_C.c.name, _C.c.key).in_(sorted(set(keys))))
        .returning(_C.c.name, _C.c.key, _C.c.tokens)
    )
    taken: dict[BucketKey, float] = {}
    for name, key, tokens in deleted:
        taken[(name, key)] = taken.get((name, key), 0.0) + float(tokens)
    return taken


async def mark_limited_nodes(conn: Any, insert: Insert, nodes: Iterable[tuple[str, str]]) -> None:
    rows = [{"namespace": ns, "node_name": node} for ns, node in sorted(set(nodes))]
    if rows:
        await conn.execute(insert(schema.limited_nodes).on_conflict_do_nothing(), rows)


async def limited_nodes(conn: Any) -> set[tuple[str, str]]:
    n = schema.limited_nodes
    return {(row[0], row[1]) for row in await conn.execute(sa.select(n.c.namespace, n.c.node_name))}
