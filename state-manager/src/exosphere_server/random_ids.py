"""Random ids for states, many at a time: 20,000 of them for one 10,000-way fan-out.

`secrets.token_hex` and `uuid.uuid4` ask the operating system for a few bytes per call (2 and 8 µs
here); a fan-out's ids then cost more than building its states. These take the same kind of bytes
(`os.urandom`, the source `secrets` uses) a few kilobytes at a time. They are ids, not secrets: the
lease ids and keys that guard something keep using `secrets` directly.
"""

from __future__ import annotations

import os
import threading

_POOL_BYTES = 8192


class _RandomPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # prepared rows are built in worker threads too
        self._data = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._at + n > len(self._data):
                self._data, self._at = os.urandom(max(_POOL_BYTES, n)), 0
            start, self._at = self._at, self._at + n
            return self._data[start : self._at]

    def forget(self) -> None:
        """After a fork: the child must not hand out the parent's bytes again."""
        self._data, self._at = b"", 0


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.forget)


def random_hex(nbytes: int) -> str:
    """`nbytes` random bytes as hex, like `secrets.token_hex(nbytes)`.

    Example::

        fanout_id = random_hex(12)  # 24 hex digits
    """
    return _pool.take(nbytes).hex()


def random_uuid() -> str:
    """A random (version 4) UUID in its usual text form, like `str(uuid.uuid4())`.

    Example::

        random_uuid()  # '1b4e28ba-2fa1-4d2e-883f-0016d3cca427'
    """
    raw = bytearray(_pool.take(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
