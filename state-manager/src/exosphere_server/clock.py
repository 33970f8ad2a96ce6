"""The server's clock: milliseconds since the epoch, the unit of every stored time.

Its own module so that every layer (storage, engine, scheduler, dashboard) can read the time without
importing another layer for it.
"""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
