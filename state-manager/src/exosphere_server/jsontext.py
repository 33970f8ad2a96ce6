"""`json.dumps` for very large values, in pieces, so that it never holds the GIL for long.

The C encoder writes a whole value in one call without letting other threads run: 15 MB of graph
nodes held every other request, `/health` included, for about 400 ms even from a worker thread.
Encoded a few thousand list items at a time, the event loop gets its turn between pieces. The text
is the same as `json.dumps` gives.

Example::

    dumps_in_pieces({"nodes": [{"a": 1}] * 100_000})   # == json.dumps(the same value)
"""

from __future__ import annotations

import json
from typing import Any

PIECE = 2000  # list items per encoder call


def dumps_in_pieces(value: Any, **options: Any) -> str:
    """`json.dumps(value, **options)`, with long lists (also inside the top-level object) encoded in pieces."""
    item_sep, key_sep = options.get("separators") or (", ", ": ")
    if isinstance(value, list) and len(value) > PIECE:
        pieces = (json.dumps(value[i : i + PIECE], **options)[1:-1] for i in range(0, len(value), PIECE))
        return "[" + item_sep.join(pieces) + "]"
    if isinstance(value, dict) and any(isinstance(v, list) and len(v) > PIECE for v in value.values()):
        members = (
            json.dumps(str(key), **options) + key_sep + dumps_in_pieces(item, **options) for key, item in value.items()
        )
        return "{" + item_sep.join(members) + "}"
    return json.dumps(value, **options)
