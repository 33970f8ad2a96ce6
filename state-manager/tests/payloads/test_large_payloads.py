"""Large payloads, on SQLite and PostgreSQL, with a real server and real runtimes.

Users rely on: a 10 MB output reaches the next nodes through placeholders whole (copied alone, carried
past a node, and embedded in longer text); the state rows, the run's listing and the claims of other
states hold only its reference, with its size; a reader who asks gets it whole; a value over the
configured maximum is refused with 413 naming the limit.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from exosphere_testing import ServerProcess, wait_until

from tests.blackbox.helpers import (
    by_identifier,
    claim_all,
    executed,
    node,
    on_database,
    register,
    run,
    states,
    trigger,
    upsert,
)
from tests.payloads.runtime_app import pattern_text

Runtimes = Callable[[], subprocess.Popen[bytes]]
TEN_MB = 10 * 1000 * 1000
INLINE = 64 * 1024  # the server's default threshold


def _hop_graph(api: httpx.Client, namespace: str) -> None:
    register(
        api,
        {
            "Make": (("size",), ("data", "size")),
            "Relay": (("size",), ("size",)),
            "Measure": (("data", "wrapped"), ("length", "sha256", "wrapped_length", "wrapped_ends")),
        },
    )
    upsert(
        api,
        "hop",
        [
            node("make", "Make", namespace, {"size": "${{ store.size }}"}, ["relay"]),
            node("relay", "Relay", namespace, {"size": "${{ make.outputs.size }}"}, ["measure"]),
            # `data` is carried past relay; `wrapped` embeds it in longer text, which reads it.
            node(
                "measure",
                "Measure",
                namespace,
                {"data": "${{ make.outputs.data }}", "wrapped": "<${{ make.outputs.data }}>"},
            ),
        ],
        store_config={"required_keys": ["size"]},
    )


def _row_sizes(server: ServerProcess, run_id: str) -> dict[str, int]:
    """The length of each state's JSON columns as stored in its row, by identifier (the largest)."""

    def read(conn: sa.Connection) -> dict[str, int]:
        rows = conn.execute(
            sa.text("SELECT identifier, inputs, outputs, carried FROM states WHERE run_id = :run_id"),
            {"run_id": run_id},
        )
        sizes: dict[str, int] = {}
        for identifier, *columns in rows:
            size = sum(len(c if isinstance(c, str) else json.dumps(c)) for c in columns)
            sizes[identifier] = max(size, sizes.get(identifier, 0))
        return sizes

    assert server.database_url is not None
    return dict(on_database(server.database_url, read))


def test_a_10_mb_output_reaches_the_next_nodes_whole_and_stays_out_of_rows_and_listings(
    server: ServerProcess, api: httpx.Client, namespace: str, runtimes: Runtimes
) -> None:
    _hop_graph(api, namespace)
    runtimes()
    run_id = trigger(api, "hop", store={"size": str(TEN_MB)})
    wait_until(lambda: run(api, run_id)["status"] in ("SUCCESS", "FAILED"), timeout_s=300, what="the run to end")
    assert run(api, run_id)["status"] == "SUCCESS", states(api, run_id)

    expected = pattern_text(TEN_MB)
    listing = api.get(f"/run/{run_id}/states")
    assert len(listing.content) < 64 * 1024, "the listing carries the payload"
    found = listing.json()["states"]
    [make] = by_identifier(found, "make")
    [measure] = by_identifier(found, "measure")
    assert measure["outputs"] == {
        "length": str(TEN_MB),
        "sha256": hashlib.sha256(expected.encode()).hexdigest(),
        "wrapped_length": str(TEN_MB + 2),
        "wrapped_ends": "<0>",
    }
    assert make["outputs"] == {"size": str(TEN_MB)}
    assert make["large_outputs"] == {"data": {"bytes": TEN_MB, "sha256": hashlib.sha256(expected.encode()).hexdigest()}}
    assert set(measure["large_inputs"]) == {"data", "wrapped"}

    # The rows hold references only: no row grew with the payload.
    assert max(_row_sizes(server, run_id).values()) < 4096

    # Asked for, it comes whole: in the state, and alone as text.
    whole = api.get(f"/state/{make['state_id']}", params={"payloads": "true"}).json()
    assert whole["outputs"]["data"] == expected and whole["large_outputs"] == {}
    text = api.get(f"/state/{measure['state_id']}/payload/inputs/wrapped")
    assert text.status_code == 200 and text.text == f"<{expected}>"
    assert api.get(f"/state/{make['state_id']}/payload/outputs/size").text == str(TEN_MB)
    missing = api.get(f"/state/{make['state_id']}/payload/outputs/nope")
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


def test_a_claim_hands_large_inputs_whole_and_an_identical_result_again_changes_nothing(
    api: httpx.Client, namespace: str
) -> None:
    register(api, {"Take": (("big",), ("out",)), "Next": (("out",), ("x",))})
    upsert(
        api,
        "take",
        [
            node("take", "Take", namespace, {"big": "${{ store.big }}"}, ["next"]),
            node("next", "Next", namespace, {"out": "${{ take.outputs.out }}"}),
        ],
        store_config={"required_keys": ["big"]},
    )
    big = "é" * INLINE  # 128 KiB of UTF-8: kept apart though under the threshold in characters
    # The store is the run's own row; the trigger's `inputs` override becomes the first state's inputs.
    run_id = trigger(api, "take", store={"big": "s"}, inputs={"big": big})
    [claimed] = claim_all(api, "Take", count=1)
    assert claimed["inputs"] == {"big": big}
    assert by_identifier(states(api, run_id), "take")[0]["large_inputs"]["big"]["bytes"] == len(big.encode())

    answer = api.post(f"/state/{claimed['state_id']}/executed", json={"outputs": [{"out": big + "!"}]})
    assert answer.status_code == 200, answer.text
    # The same result again without a lease (a retry after a lost answer) is recognised by content.
    again = api.post(f"/state/{claimed['state_id']}/executed", json={"outputs": [{"out": big + "!"}]})
    assert again.status_code == 200, again.text
    [child] = claim_all(api, "Next", count=1)
    assert child["inputs"] == {"out": big + "!"}
    assert len(by_identifier(states(api, run_id), "next")) == 1


def test_values_over_the_maximum_are_refused_with_413_naming_the_limit(
    make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    limit = 1024 * 1024
    server = make_server(env={"EXOSPHERE_MAX_PAYLOAD_BYTES": str(limit)})
    with httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=60
    ) as api:
        register(api, {"Take": (("big",), ("out",))})
        upsert(api, "take", [node("take", "Take", namespace, {"big": "x"})])
        refused = api.post("/graph/take/trigger", json={"inputs": {"big": "x" * (limit + 1)}})
        assert refused.status_code == 413, refused.text
        assert str(limit) in refused.json()["detail"] and "EXOSPHERE_MAX_PAYLOAD_BYTES" in refused.json()["detail"]

        run_id = trigger(api, "take", inputs={"big": "x" * limit})  # at the limit: taken
        [claimed] = claim_all(api, "Take", count=1)
        assert len(claimed["inputs"]["big"]) == limit
        too_big = executed(api, claimed, {"out": "y" * (limit + 1)})
        assert too_big.status_code == 413 and str(limit) in too_big.json()["detail"], too_big.text
        # Nothing of the refused result was applied: the state is still held and takes a result that fits.
        assert executed(api, claimed, {"out": "y" * limit}).status_code == 200
        assert run(api, run_id)["status"] == "SUCCESS"


def test_sqlite_keeps_payloads_as_files_beside_the_database(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    if server.database_url is None or not server.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL keeps payloads in its payloads table")
    register(api, {"Take": (("big",), ("out",))})
    upsert(api, "files", [node("files", "Take", namespace, {"big": "x"})])
    big = pattern_text(INLINE + 1)
    run_id = trigger(api, "files", inputs={"big": big})
    database = Path(server.database_url.removeprefix("sqlite:///"))
    stored = database.parent / f"{database.name}-payloads" / run_id / hashlib.sha256(big.encode()).hexdigest()
    assert stored.read_text() == big
    for path in (stored, stored.parent, stored.parent.parent):
        assert path.stat().st_mode & 0o077 == 0, path  # owner-only, like the database
