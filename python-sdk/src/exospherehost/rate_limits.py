"""How long a provider that answered 429 asks to wait, read from its answer's headers.

Understands ``Retry-After`` (seconds, or an HTTP date), ``retry-after-ms``, and the
``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens`` headers that OpenAI-style APIs send
(``"1s"``, ``"6m0s"``, ``"120ms"``, or plain seconds); the longest wait given wins.

Example::

    answer = await client.post(url, json=body)
    if answer.status_code == 429:
        raise RateLimitedSignal("openai", retry_after_seconds=retry_after_seconds(answer) or 1.0)
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
RESET_HEADERS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-ratelimit-reset")


def retry_after_seconds(response: Any, now: float | None = None) -> float | None:
    """Seconds to wait before calling again, from an ``httpx.Response`` (or anything with ``headers``,
    or a plain mapping of headers); None when the answer says nothing usable.

    Example::

        retry_after_seconds(httpx.Response(429, headers={"Retry-After": "2"}))  # 2.0
    """
    headers: Mapping[str, str] = getattr(response, "headers", response)
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    waits: list[float] = []
    if "retry-after-ms" in lower:
        found = _number(lower["retry-after-ms"])
        if found is not None:
            waits.append(found / 1000)
    if "retry-after" in lower:
        found = _seconds_or_date(lower["retry-after"], time.time() if now is None else now)
        if found is not None:
            waits.append(found)
    for name in RESET_HEADERS:
        if name in lower:
            found = _duration(lower[name])
            if found is not None:
                waits.append(found)
    return max(waits) if waits else None


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value >= 0 else None


def _seconds_or_date(text: str, now: float) -> float | None:
    seconds = _number(text)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _duration(text: str) -> float | None:
    """``"1s"``, ``"6m0s"``, ``"1h2m3.5s"``, ``"120ms"`` or plain seconds."""
    text = text.strip()
    plain = _number(text)
    if plain is not None:
        return plain
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in parts)
