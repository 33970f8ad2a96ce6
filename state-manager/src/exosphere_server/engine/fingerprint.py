"""Fingerprint of a unite state (PROTOCOL §5.6).

Two completions that both find a unite condition satisfied build the same fingerprint, and a
unique index on it lets exactly one insert win, also across servers.

Example::

    unite_fingerprint(node_name="Sum", namespace_name="demo", identifier="sum", graph_name="g",
                      run_id="r1", retry_count=0, parents={"split": "s1"}, manual_retry_fanout_id="")
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping


def unite_fingerprint(
    *,
    node_name: str,
    namespace_name: str,
    identifier: str,
    graph_name: str,
    run_id: str,
    retry_count: int,
    parents: Mapping[str, str],
    manual_retry_fanout_id: str,
) -> str:
    """SHA-256 hex of the canonical JSON of the fields that make a unite state unique."""
    payload = {
        "node_name": node_name,
        "namespace_name": namespace_name,
        "identifier": identifier,
        "graph_name": graph_name,
        "run_id": run_id,
        "retry_count": retry_count,
        "parents": dict(parents),
        "manual_retry_fanout_id": manual_retry_fanout_id,
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
