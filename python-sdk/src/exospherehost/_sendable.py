"""What a runtime may put on the wire: checks for values the state manager cannot take.

A ``str`` may hold a lone surrogate (``os.listdir`` returns ``"\\udcff"`` for a file name that is not
UTF-8): such text cannot be encoded as UTF-8 JSON at all. NUL characters encode, but the state
manager refuses them (PostgreSQL cannot store them), as it refuses NaN and Infinity. Finding these
before sending turns what would be a request that can never succeed into a clear error for one state.

Example::

    first_problem({"path": "ab\\udcff"})
    # ("path", "is not valid Unicode (lone surrogate '\\udcff' at position 2): 'ab\\udcff'")
    sendable_text("bad \\udcff \\x00")  # "bad \\\\udcff \\\\x00"
"""

from __future__ import annotations

import math
from typing import Any

# How much of an offending value an error message shows.
_SHOWN_CHARS = 60


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be sent, naming the first bad character and its position; else None."""
    for position, char in enumerate(text):
        if "\ud800" <= char <= "\udfff":
            # Python keeps valid pairs as one code point, so any surrogate here is a lone one.
            return f"is not valid Unicode (lone surrogate {char!r} at position {position})"
        if char == "\x00":
            return f"contains a NUL character (\\x00) at position {position}, which the state manager cannot store"
    return None


def first_problem(value: Any) -> tuple[str, str] | None:
    """Where inside a JSON value the first thing that cannot be sent is (``a.b[2]``, empty for the
    value itself) and why; None when all of it can be sent."""
    found = _first_problem(value, "")
    return None if found is None else (found[0].lstrip("."), found[1])


def _first_problem(value: Any, where: str) -> tuple[str, str] | None:
    if value is None or isinstance(value, bool | int):
        return None
    if isinstance(value, str):
        reason = text_problem(value)
        return None if reason is None else (where, f"{reason}: {shown(value)}")
    if isinstance(value, float):
        return None if math.isfinite(value) else (where, f"is not a finite number ({value})")
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_problem(item, f"{where}[{index}]")
            if found is not None:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            inside = f"{where}.{sendable_text(str(key))}"
            if isinstance(key, str) and (reason := text_problem(key)) is not None:
                return inside, f"is a key that {reason}"
            if not isinstance(key, str | int | float | bool) and key is not None:
                return inside, f"has a key of type {type(key).__name__}, which is not JSON"
            found = _first_problem(item, inside)
            if found is not None:
                return found
        return None
    return where, f"is of type {type(value).__name__}, which is not JSON"


def shown(text: str) -> str:
    """A short rendering of a value for an error message; ``repr`` escapes surrogates and NUL, so it is sendable."""
    return repr(text) if len(text) <= _SHOWN_CHARS else repr(text[:_SHOWN_CHARS]) + "..."


def sendable_text(text: str) -> str:
    """``text`` with lone surrogates and NUL characters escaped (``\\udcff``, ``\\x00``), so it can always be sent."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
