"""Free very large values one item at a time, in a worker thread.

Dropping the last reference to 100,000 parsed graph nodes frees about a million objects in one C call
that holds the GIL: 50-100 ms during which no request is answered, the event loop's own thread being
the one that drops it. Emptied item by item from a worker thread instead, the loop gets its turn
between items, and what is left to free at the end is small.

Example::

    await asyncio.to_thread(release_gradually, parsed_body, shape)
"""

from __future__ import annotations

from typing import Any


def release_gradually(*values: Any) -> None:
    """Empty the lists and dicts in `values`, and those held by their attributes, one item at a time.

    The caller must hold no other use for them: they are left empty.
    """
    for value in values:
        if isinstance(value, list | dict):
            _empty(value)
            continue
        attributes = getattr(value, "__dict__", None)
        for item in (attributes or {}).values():
            if isinstance(item, list | dict):
                _empty(item)
            elif hasattr(item, "__dict__") and not isinstance(item, type):
                release_gradually(item)


def _empty(container: list[Any] | dict[Any, Any]) -> None:
    if isinstance(container, list):
        while container:
            container.pop()
    else:
        while container:
            container.popitem()
