"""Lock-out of client addresses that send wrong keys: the API key, the metrics key, the dashboard login.

After `max_failures` wrong keys within `window_s`, every authenticated request from that address gets
a `429` with `Retry-After`, the right key included, until `lockout_s` have passed since its latest
wrong key: an address that keeps guessing stays locked. A right key never clears the count, because
behind a shared address (a NAT, a proxy) a legitimate client would otherwise reset an attacker's.

The tracker lives in memory, one per replica: N replicas behind a load balancer allow up to N times
the failures before every one of them locks an address out. Its size is bounded (`capacity`): when
full, the address seen longest ago is forgotten first.

Example::

    lockouts = Lockouts(max_failures=20, window_s=60, lockout_s=60)
    lockouts.record_failure("203.0.113.7")
    lockouts.seconds_left("203.0.113.7")   # 0.0 until the 20th failure within a minute
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

DEFAULT_CAPACITY = 10_000


@dataclass
class _Record:
    window_start: float
    failures: int
    locked_until: float = 0.0


class Lockouts:
    """Failed authentications per client address, in memory, most recently failing address last."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        lockout_s: float,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.window_s, self.lockout_s = max_failures, window_s, lockout_s
        self._capacity = capacity
        self._clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._records)

    def record_failure(self, address: str) -> None:
        now = self._clock()
        record = self._records.get(address)
        if record is None or now - record.window_start >= self.window_s:
            locked_until = record.locked_until if record is not None else 0.0
            record = _Record(window_start=now, failures=0, locked_until=locked_until)
        record.failures += 1
        if record.failures >= self.max_failures or record.locked_until > now:
            record.locked_until = now + self.lockout_s
        self._records[address] = record
        self._records.move_to_end(address)
        while len(self._records) > self._capacity:
            self._records.popitem(last=False)

    def seconds_left(self, address: str) -> float:
        """How long `address` stays locked out (0 when it is not)."""
        record = self._records.get(address)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self._clock())


def client_address(request: Request) -> str:
    # Behind a trusted proxy uvicorn has already put the X-Forwarded-For client here (FORWARDED_ALLOW_IPS).
    return request.client.host if request.client is not None else "unknown"


def lockouts_of(request: Request) -> Lockouts:
    lockouts: Lockouts = request.app.state.lockouts
    return lockouts


def lockout_message(seconds_left: float) -> str:
    return f"Too many wrong keys from this address: try again in {math.ceil(seconds_left)} s"


def note_failure(request: Request) -> None:
    lockouts_of(request).record_failure(client_address(request))


def lockout_seconds_left(request: Request) -> float:
    return lockouts_of(request).seconds_left(client_address(request))


def refuse_if_locked_out(request: Request) -> None:
    """A `429` naming the wait, for every request from a locked-out address."""
    left = lockout_seconds_left(request)
    if left > 0:
        raise HTTPException(
            status_code=429, detail=lockout_message(left), headers={"Retry-After": str(math.ceil(left))}
        )
