"""Descendant counts are kept only under the states a unite can ask about (its targets): a graph without
unites, and the branches below a node no unite waits on, write none; unites still wait exactly, also
for runs in flight when the server is upgraded past migration 0017."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import sqlalchemy as sa
from exosphere_testing import ServerProcess

from .helpers import (
    by_identifier,
    claim,
    claim_all,
    counts_match_states,
    downgrade_to,
    errored,
    executed,
    node,
    on_database,
    register,
    run,
    states,
    trigger,
    upsert,
)

WIDTH = 12


def _counted_under(url: str, run_id: str) -> dict[str, int]:
    """Rows of `descendant_counts` per ancestor state of the run, whatever their sums (zero included):
    which ancestors were ever written to."""

    def read(conn: sa.Connection) -> dict[str, int]:
        rows = conn.execute(
            sa.text(
                "SELECT ancestor_id, COUNT(*) FROM descendant_counts "
                "WHERE ancestor_id IN (SELECT id FROM states WHERE run_id = :r) GROUP BY ancestor_id"
            ),
            {"r": run_id},
        ).all()
        return {r[0]: int(r[1]) for r in rows}

    return on_database(url, read)


def _fan_graph(api: httpx.Client, namespace: str, name: str, *, unite: bool) -> None:
    """plan -> split (fan-out) -> work -> check, and with `unite` also gather after work (unites plan, ALL_DONE)."""
    register(
        api,
        {
            "Plan": ((), ("n",)),
            "Split": ((), ("item",)),
            "Work": (("item",), ("out",)),
            "Check": (("out",), ("ok",)),
            "Gather": ((), ("done",)),
        },
    )
    work_next = ["check", "gather"] if unite else ["check"]
    nodes = [
        node("plan", "Plan", namespace, {}, ["split"]),
        node("split", "Split", namespace, {}, ["work"]),
        node("work", "Work", namespace, {"item": "${{ split.outputs.item }}"}, work_next),
        node("check", "Check", namespace, {"out": "${{ work.outputs.out }}"}),
    ]
    if unite:
        nodes.append(node("gather", "Gather", namespace, {}, unites="plan", strategy="ALL_DONE"))
    upsert(api, name, nodes, retry_policy={"max_retries": 0})


def _fan_out(api: httpx.Client, graph: str) -> str:
    run_id = trigger(api, graph)
    [plan] = claim_all(api, "Plan", count=1)
    assert executed(api, plan, {"n": str(WIDTH)}).status_code == 200
    [split] = claim_all(api, "Split", count=1)
    assert executed(api, split, *({"item": str(i)} for i in range(WIDTH))).status_code == 200
    return run_id


def test_a_graph_without_unites_writes_no_descendant_counts(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    _fan_graph(api, namespace, "plain", unite=False)
    run_id = _fan_out(api, "plain")
    for work in claim_all(api, "Work", count=WIDTH):
        assert executed(api, work, {"out": "y"}).status_code == 200
    for check in claim_all(api, "Check", count=WIDTH):
        assert executed(api, check, {"ok": "y"}).status_code == 200
    assert run(api, run_id)["status"] == "SUCCESS"
    assert _counted_under(server.database_url or "", run_id) == {}
    counts_match_states(api, server.database_url or "", run_id)


def test_only_the_unite_target_is_counted_and_the_unite_still_waits_for_every_descendant(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    url = server.database_url or ""
    _fan_graph(api, namespace, "united", unite=True)
    run_id = _fan_out(api, "united")
    works = claim_all(api, "Work", count=WIDTH)
    for work in works[:-2]:
        assert executed(api, work, {"out": "y"}).status_code == 200
    for check in claim_all(api, "Check", count=WIDTH - 2):
        assert executed(api, check, {"ok": "y"}).status_code == 200
    assert claim(api, "Gather") == []  # two works still run below plan
    assert errored(api, works[-2]).status_code == 200
    assert claim(api, "Gather") == []  # one work still runs
    counts_match_states(api, url, run_id)
    assert executed(api, works[-1], {"out": "y"}).status_code == 200
    # The last check is counted under plan, though not under its direct parent (a work, no unite target).
    assert claim(api, "Gather") == []
    [last_check] = claim_all(api, "Check", count=1)
    assert claim(api, "Gather") == []
    assert executed(api, last_check, {"ok": "y"}).status_code == 200
    [gather] = claim_all(api, "Gather", count=1)  # ALL_DONE: the errored work is done too
    assert executed(api, gather, {"done": "y"}).status_code == 200
    found = states(api, run_id)
    assert len(by_identifier(found, "gather")) == 1
    [plan] = by_identifier(found, "plan")
    # Only plan, the target, was ever counted under: not the split states (each a work's direct
    # parent), nor the works (each a check's), nor the unite's own lineage below plan.
    assert set(_counted_under(url, run_id)) == {plan["state_id"]}
    counts_match_states(api, url, run_id)


def _as_before_0017(run_id: str) -> Callable[[sa.Connection], None]:
    """Make the run's rows what the code before migration 0017 wrote (every state counted under every
    ancestor in `state_ancestors`), then take the schema back to 0016_links_by_state."""

    def work(conn: sa.Connection) -> None:
        run_states = "SELECT id FROM states WHERE run_id = :r"
        conn.execute(sa.text(f"DELETE FROM descendant_counts WHERE ancestor_id IN ({run_states})"), {"r": run_id})
        conn.execute(
            sa.text(
                "INSERT INTO descendant_counts (ancestor_id, status, shard, states) "
                "SELECT a.ancestor_id, s.status, 1, COUNT(*) FROM state_ancestors a JOIN states s ON s.id = a.state_id "
                "WHERE s.run_id = :r GROUP BY a.ancestor_id, s.status"
            ),
            {"r": run_id},
        )
        downgrade_to(conn, "0016_links_by_state")

    return work


def test_a_run_in_flight_across_the_upgrade_to_0017_unites_exactly(
    make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    server = make_server()
    url = server.database_url or ""

    def client() -> httpx.Client:
        return httpx.Client(
            base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=30
        )

    with client() as api:
        _fan_graph(api, namespace, "upgraded", unite=True)
        run_id = _fan_out(api, "upgraded")
        works = claim_all(api, "Work", count=4)  # four claimed, the other eight wait unclaimed
        assert executed(api, works[0], {"out": "y"}).status_code == 200
    server.stop()
    on_database(url, _as_before_0017(run_id))
    server.start()  # migrates to 0017: the run's states keep NULL, counted under every ancestor as before
    with client() as api:
        for work in works[1:]:  # claimed before the upgrade, finished after it
            assert executed(api, work, {"out": "y"}).status_code == 200
        rest = claim_all(api, "Work", count=WIDTH - 4)
        for work in rest[:-1]:
            assert executed(api, work, {"out": "y"}).status_code == 200
        for check in claim_all(api, "Check", count=WIDTH - 1):
            assert executed(api, check, {"ok": "y"}).status_code == 200
        assert claim(api, "Gather") == []  # one work still runs below plan
        counts_match_states(api, url, run_id)
        assert executed(api, rest[-1], {"out": "y"}).status_code == 200
        [check] = claim_all(api, "Check", count=1)  # created after the upgrade: not counted under its work
        assert executed(api, check, {"ok": "y"}).status_code == 200
        [gather] = claim_all(api, "Gather", count=1)
        assert executed(api, gather, {"done": "y"}).status_code == 200
        assert run(api, run_id)["status"] == "SUCCESS"
        assert len(by_identifier(states(api, run_id), "gather")) == 1
        counts_match_states(api, url, run_id)
