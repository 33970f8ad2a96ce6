"""What text the server accepts, stores and sends back: valid Unicode, without NUL, finite numbers.

JSON may carry a lone UTF-16 surrogate (`"\\ud800"`) and Python's parser turns it into a string that
cannot be encoded as UTF-8. Stored, such a string later failed every answer that carried it (a
claim among them, after its transaction had committed). PostgreSQL also refuses NUL (U+0000) in
text and NaN or Infinity in JSON. So both are refused at the door, with the field named, on every
backend alike (D21).

Example::

    unstorable_at({"store": {"k": "\\ud800"}})
    # "store.k: text must be valid Unicode (lone surrogate \\ud800 at position 0)"
"""

from __future__ import annotations

import math
from typing import Any


def text_problem(text: str) -> str | None:
    """Why one string cannot be stored and sent back, or None. ASCII (the common case) costs one call."""
    if text.isascii():
        return "text must not contain NUL (\\u0000) characters" if "\x00" in text else None
    if "\x00" in text:
        return "text must not contain NUL (\\u0000) characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"text must be valid Unicode (lone surrogate {text[exc.start]!a} at position {exc.start})"
    return None


def raw_json_surely_storable(raw: bytes) -> bool:
    """True when a JSON text, parsed strictly, can hold nothing that `unstorable_at` refuses.

    Refused values can only come from an escape (`\\u0000`, a lone `\\ud800`), a `NaN` or
    `Infinity` token, or bytes that are not UTF-8 (a strict parser refuses raw control characters), so
    a body without any of them needs no walk: a few byte searches instead of a Python walk over every
    value (10,000 fan-out outputs: well under a millisecond instead of about ten). False is no verdict,
    only "walk it".

    Example::

        raw_json_surely_storable(b'{"outputs": [{"x": "1"}]}')   # True
        raw_json_surely_storable(b'{"x": "\\u00e9"}')           # False: walk it
    """
    if b"\\u" in raw or b"NaN" in raw or b"Infinity" in raw or b"\x00" in raw:  # NUL bytes: UTF-16/32 text
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def unstorable_at(value: Any, where: str = "") -> str | None:
    """Why a JSON value cannot be stored as sent, naming where (``nodes[0].inputs.x: ...``); else None."""
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{where or 'value'}: {problem}" if problem else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where or 'value'}: numbers must be finite, got {value}"
    if isinstance(value, dict):
        for key, item in value.items():
            inside = f"{where}.{sendable(str(key))}" if where else sendable(str(key))
            problem = text_problem(key) if isinstance(key, str) else None
            if problem is not None:
                return f"{inside}: key {problem}"
            found = unstorable_at(item, inside)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = unstorable_at(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def sendable(text: str) -> str:
    """Text safe to store and send, for messages the server writes itself from others' text."""
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
