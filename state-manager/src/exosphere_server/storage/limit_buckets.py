"""Which of the ready limited states a claim may hand out: pure token-bucket arithmetic, no SQL.

A limit's per-minute budgets are token buckets that refill continuously (`rate / 60,000` per
millisecond) up to one second's worth (`BURST_MS`): over any stretch of time a bucket hands out at
most its rate plus that one-second burst, and never more than a burst at once, which keeps a
provider that counts per second (as the large ones do) as happy as one that counts per minute. A
state fits when every bucket it is charged to has room: under the concurrency cap, not paused, and
with at least one request and its token estimate left (or a full bucket, for an estimate bigger than
the burst: the bucket then goes into debt). A state that does not fit blocks its buckets for the
states after it, so states beyond a limit keep their order.

Example::

    decision = decide(states, buckets, limits, holds, now=now_ms(), limit=10)
    decision.chosen      # states to claim, in order
    decision.retry_at    # when a blocked bucket may have room again (None: nothing blocked)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from exosphere_server.storage.records import BucketRecord, LimitRecord, StateRecord

BURST_MS = 1_000
# A claim blocked by a concurrency cap or by an undefined limit looks again this often at the latest
# (a state that leaves QUEUED also wakes the claimers of its own node at once).
RECHECK_MS = 1_000
# A node's own `concurrency` is a bucket named after its graph node; `@` cannot start a limit's name.
NODE_PREFIX = "@node:"

BucketKey = tuple[str, str]  # (limit name, key)


def node_bucket_name(graph_name: str, identifier: str) -> str:
    return f"{NODE_PREFIX}{graph_name}/{identifier}"


def charges_of(state: StateRecord) -> list[tuple[BucketKey, int, int | None]]:
    """The (bucket, token estimate, node concurrency) a state is charged at claim."""
    return [
        ((str(c["name"]), str(c.get("key") or "")), int(c.get("tokens") or 0), c.get("concurrency"))
        for c in state.limits or []
    ]


def capacity(per_minute: int) -> float:
    return per_minute * BURST_MS / 60_000


def refill(bucket: BucketRecord, limit: LimitRecord | None, now: int) -> None:
    """Add what the bucket earned since `refilled_at` (none while paused), up to one burst."""
    if limit is None or now <= bucket.refilled_at:
        return
    elapsed = now - bucket.refilled_at
    if limit.requests_per_minute:
        cap = max(1.0, capacity(limit.requests_per_minute))
        bucket.requests = min(cap, bucket.requests + elapsed * limit.requests_per_minute / 60_000)
    if limit.tokens_per_minute:
        cap = capacity(limit.tokens_per_minute)
        bucket.tokens = min(cap, bucket.tokens + elapsed * limit.tokens_per_minute / 60_000)
    bucket.refilled_at = now


def full_bucket(namespace: str, key: BucketKey, limit: LimitRecord | None, now: int) -> BucketRecord:
    rpm = limit.requests_per_minute if limit else None
    tpm = limit.tokens_per_minute if limit else None
    requests = max(1.0, capacity(rpm)) if rpm else 0.0
    tokens = capacity(tpm) if tpm else 0.0
    return BucketRecord(namespace, key[0], key[1], requests, tokens, now, 0)


@dataclass
class Decision:
    chosen: list[StateRecord] = field(default_factory=list)
    changed: dict[BucketKey, BucketRecord] = field(default_factory=dict)  # buckets charged
    holds: list[tuple[str, BucketKey]] = field(default_factory=list)  # (state id, bucket) to hold
    retry_at: int | None = None

    def wait_until(self, at: int) -> None:
        self.retry_at = at if self.retry_at is None else min(self.retry_at, at)


def decide(
    states: Sequence[StateRecord],
    buckets: Mapping[BucketKey, BucketRecord],
    limits: Mapping[str, LimitRecord],
    held: Mapping[BucketKey, int],
    *,
    now: int,
    limit: int,
) -> Decision:
    """Pick, in order, up to `limit` of `states` (oldest first) whose buckets all have room, and charge them.

    `buckets` hold every bucket the states are charged to, locked and refilled to `now`; `held`: how
    many claimed states hold each bucket with a concurrency cap.
    """
    decision = Decision()
    blocked: set[BucketKey] = set()
    taken: Counter[BucketKey] = Counter()
    for state in states:
        if len(decision.chosen) >= limit:
            break
        charges = charges_of(state)
        if all(
            key not in blocked and _room(key, tokens, cap, buckets, limits, held, taken, now, decision)
            for key, tokens, cap in charges
        ):
            for key, tokens, cap in charges:
                _charge(buckets[key], limits.get(key[0]), tokens)
                decision.changed[key] = buckets[key]
                if _concurrency(key, cap, limits) is not None:
                    taken[key] += 1
                    decision.holds.append((state.id, key))
            decision.chosen.append(state)
        else:
            blocked.update(key for key, _, _ in charges)  # later states of these buckets wait their turn
    return decision


def _concurrency(key: BucketKey, node_cap: int | None, limits: Mapping[str, LimitRecord]) -> int | None:
    if key[0].startswith(NODE_PREFIX):
        return node_cap
    definition = limits.get(key[0])
    return definition.concurrency if definition else None


def _room(
    key: BucketKey,
    tokens: int,
    node_cap: int | None,
    buckets: Mapping[BucketKey, BucketRecord],
    limits: Mapping[str, LimitRecord],
    held: Mapping[BucketKey, int],
    taken: Counter[BucketKey],
    now: int,
    decision: Decision,
) -> bool:
    bucket = buckets[key]
    definition = limits.get(key[0])
    if definition is None and not key[0].startswith(NODE_PREFIX):
        decision.wait_until(now + RECHECK_MS)  # an undefined limit holds its states until it is defined
        return False
    paused_until = max(bucket.paused_until, definition.paused_until if definition else 0)
    if paused_until > now:
        decision.wait_until(paused_until)
        return False
    cap = _concurrency(key, node_cap, limits)
    if cap is not None and held.get(key, 0) + taken[key] >= cap:
        decision.wait_until(now + RECHECK_MS)
        return False
    if definition is None:
        return True
    if definition.requests_per_minute:
        need = min(1.0, max(1.0, capacity(definition.requests_per_minute)))
        if bucket.requests < need:
            decision.wait_until(now + _ms_to_earn(need - bucket.requests, definition.requests_per_minute))
            return False
    if definition.tokens_per_minute and tokens > 0:
        need = min(float(tokens), capacity(definition.tokens_per_minute))
        if bucket.tokens < need:
            decision.wait_until(now + _ms_to_earn(need - bucket.tokens, definition.tokens_per_minute))
            return False
    return True


def _ms_to_earn(missing: float, per_minute: int) -> int:
    return max(1, int(missing * 60_000 / per_minute) + 1)


def _charge(bucket: BucketRecord, definition: LimitRecord | None, tokens: int) -> None:
    if definition is None:
        return
    if definition.requests_per_minute:
        bucket.requests -= 1
    if definition.tokens_per_minute:
        bucket.tokens -= tokens
