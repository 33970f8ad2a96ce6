"""Pause Python's cycle collector while a large body is parsed, validated and stored.

A graph of 100,000 nodes becomes about a million young objects. Each time the collector's counters
trip, it walks all of them, and every walk holds the GIL for 150-250 ms: every other request, `/health`
included, waits that long. Those objects hold no reference cycles and are freed by reference counting
when the request ends, so the collector has nothing to find in them. It is resumed once the last such
request has finished, when its objects are already gone.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

LARGE_BODY_BYTES = 1024 * 1024  # below this, parsing is short enough that collections cost little

_lock = threading.Lock()
_holders = 0


@contextlib.contextmanager
def cycle_collector_paused(body_bytes: int) -> Iterator[None]:
    """Pause the collector for the duration, when `body_bytes` is large; nestable across requests."""
    global _holders
    if body_bytes < LARGE_BODY_BYTES:
        yield
        return
    with _lock:
        _holders += 1
        if _holders == 1:
            gc.disable()
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                gc.enable()
