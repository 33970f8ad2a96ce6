"""A state keeps its parent, not its whole ancestry; placeholders of far ancestors still resolve exactly,
unites still wait for everything below their target, and rows written before migration 0006 keep working."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa
from exosphere_testing import ServerProcess

from .helpers import (
    by_identifier,
    claim,
    claim_all,
    counts_match_states,
    downgrade_to,
    executed,
    node,
    on_database,
    register,
    run,
    states,
    trigger,
    upsert,
)


def stored_parents(url: str, state_id: str) -> dict[str, str]:
    def read(conn: sa.Connection) -> dict[str, str]:
        value = conn.execute(sa.text("SELECT parents FROM states WHERE id = :id"), {"id": state_id}).scalar_one()
        return dict(json.loads(value) if isinstance(value, str) else value)

    return on_database(url, read)


def details(api: httpx.Client, state_id: str) -> dict[str, Any]:
    response = api.get(f"/state/{state_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


DEPTH = 40


def test_a_deep_chain_resolves_far_placeholders_and_stores_only_the_parent(
    server: ServerProcess, api: httpx.Client, namespace: str
) -> None:
    """Each step reads the root's output, its parent's and its grandparent's; the last row keeps one parent."""
    register(
        api,
        {"Root": ((), ("x", "v")), "First": (("root", "prev"), ("v",)), "Step": (("root", "prev", "back2"), ("v",))},
    )
    nodes = [node("n0", "Root", namespace, {}, ["n1"])]
    nodes.append(node("n1", "First", namespace, {"root": "${{ n0.outputs.x }}", "prev": "${{ n0.outputs.v }}"}, ["n2"]))
    for k in range(2, DEPTH):
        inputs = {
            "root": "r=${{ n0.outputs.x }}",
            "prev": "${{ n" + str(k - 1) + ".outputs.v }}",
            "back2": "${{ n" + str(k - 2) + ".outputs.v }}",
        }
        nodes.append(node(f"n{k}", "Step", namespace, inputs, [f"n{k + 1}"] if k + 1 < DEPTH else []))
    upsert(api, "deep", nodes)
    run_id = trigger(api, "deep")
    [state] = claim_all(api, "Root", count=1)
    assert executed(api, state, {"x": "X", "v": "v0"}).status_code == 200
    ids = [state["state_id"]]
    for k in range(1, DEPTH):
        [state] = claim_all(api, "First" if k == 1 else "Step", count=1)
        expected = {"root": "X", "prev": "v0"} if k == 1 else {"root": "r=X", "prev": f"v{k - 1}", "back2": f"v{k - 2}"}
        assert state["inputs"] == expected
        assert executed(api, state, {"v": f"v{k}"}).status_code == 200
        ids.append(state["state_id"])
    assert run(api, run_id)["status"] == "SUCCESS"
    # The whole lineage is still what people read, root first ...
    assert details(api, ids[-1])["parents"] == {f"n{k}": ids[k] for k in range(DEPTH - 1)}
    assert by_identifier(states(api, run_id), f"n{DEPTH - 1}")[0]["parents"] == {
        f"n{k}": ids[k] for k in range(DEPTH - 1)
    }
    # ... but the row holds only the parent: it does not grow with the depth.
    assert stored_parents(server.database_url or "", ids[-1]) == {f"n{DEPTH - 2}": ids[-2]}


def test_fan_out_siblings_carry_what_their_branches_and_the_unite_read(api: httpx.Client, namespace: str) -> None:
    """plan -> split (fan-out) -> work -> check, and a side leaf under split; gather unites plan, after reads far up."""
    register(
        api,
        {
            "Plan": ((), ("x", "unused")),
            "Split": (("x",), ("item",)),
            "Work": (("x", "item"), ("out",)),
            "Check": (("x", "item", "out"), ("ok",)),
            "Side": (("x",), ("s",)),
            "Gather": (("x",), ("total",)),
            "After": (("x", "total"), ("done",)),
        },
    )
    upsert(
        api,
        "fan-carry",
        [
            node("plan", "Plan", namespace, {}, ["split"]),
            node("split", "Split", namespace, {"x": "${{ plan.outputs.x }}"}, ["work", "side"]),
            node(
                "work",
                "Work",
                namespace,
                {"x": "${{ plan.outputs.x }}", "item": "${{ split.outputs.item }}"},
                ["check"],
            ),
            node(
                "check",
                "Check",
                namespace,
                {"x": "${{ plan.outputs.x }}", "item": "${{ split.outputs.item }}", "out": "${{ work.outputs.out }}"},
                ["gather"],
            ),
            node("side", "Side", namespace, {"x": "${{ plan.outputs.x }}"}),
            node("gather", "Gather", namespace, {"x": "${{ plan.outputs.x }}"}, ["after"], unites="plan"),
            node("after", "After", namespace, {"x": "${{ plan.outputs.x }}", "total": "${{ gather.outputs.total }}"}),
        ],
    )
    run_id = trigger(api, "fan-carry")
    [plan] = claim_all(api, "Plan", count=1)
    executed(api, plan, {"x": "X", "unused": "U"})
    [split] = claim_all(api, "Split", count=1)
    assert split["inputs"] == {"x": "X"}
    executed(api, split, *({"item": str(i)} for i in range(3)))
    works = claim_all(api, "Work", count=3)
    sides = claim_all(api, "Side", count=3)
    assert sorted(w["inputs"]["item"] for w in works) == ["0", "1", "2"]
    assert all(w["inputs"]["x"] == "X" for w in works) and all(s["inputs"] == {"x": "X"} for s in sides)
    for w in works:
        executed(api, w, {"out": "o" + w["inputs"]["item"]})
    checks = claim_all(api, "Check", count=3)
    assert sorted((c["inputs"]["item"], c["inputs"]["out"]) for c in checks) == [("0", "o0"), ("1", "o1"), ("2", "o2")]
    for c in checks:
        executed(api, c, {"ok": "y"})
    assert claim(api, "Gather") == []  # the side leaves still run: they descend from plan too
    for s in sides[:-1]:
        executed(api, s, {"s": "s"})
        assert claim(api, "Gather") == []
    executed(api, sides[-1], {"s": "s"})
    [gather] = claim_all(api, "Gather", count=1)
    assert gather["inputs"] == {"x": "X"}
    executed(api, gather, {"total": "3"})
    [after] = claim_all(api, "After", count=1)
    assert after["inputs"] == {"x": "X", "total": "3"}
    executed(api, after, {"done": "y"})
    assert run(api, run_id)["status"] == "SUCCESS"
    found = states(api, run_id)
    assert len(by_identifier(found, "gather")) == 1
    [after_state] = by_identifier(found, "after")
    assert list(after_state["parents"]) == ["plan", "gather"]  # a unite's lineage is its target's, then itself


def _legacy_graph(api: httpx.Client, namespace: str) -> None:
    """a -> b -> c -> d -> (f, u); u unites b; u -> g. Placeholders reach back to a and b from everywhere."""
    register(
        api,
        {
            "A": ((), ("x",)),
            "B": (("x",), ("y",)),
            "C": (("y",), ("z",)),
            "D": (("x", "y"), ("w",)),
            "F": (("x", "z", "w"), ("f",)),
            "U": (("x", "y"), ("t",)),
            "G": (("x", "t"), ("g",)),
        },
    )
    upsert(
        api,
        "legacy",
        [
            node("a", "A", namespace, {}, ["b"]),
            node("b", "B", namespace, {"x": "${{ a.outputs.x }}"}, ["c"]),
            node("c", "C", namespace, {"y": "${{ b.outputs.y }}"}, ["d"]),
            node("d", "D", namespace, {"x": "${{ a.outputs.x }}", "y": "${{ b.outputs.y }}"}, ["f", "u"]),
            node(
                "f",
                "F",
                namespace,
                {"x": "${{ a.outputs.x }}", "z": "${{ c.outputs.z }}", "w": "${{ d.outputs.w }}"},
            ),
            node("u", "U", namespace, {"x": "${{ a.outputs.x }}", "y": "${{ b.outputs.y }}"}, ["g"], unites="b"),
            node("g", "G", namespace, {"x": "${{ a.outputs.x }}", "t": "${{ u.outputs.t }}"}),
        ],
    )


def _make_rows_legacy(full_parents: dict[str, dict[str, str]]) -> Callable[[sa.Connection], None]:
    """Rewrite states as the code before migration 0006 wrote them: the whole ancestry in `parents` and in
    `state_ancestors`, then take the schema back to 0005_api_keys."""

    def work(conn: sa.Connection) -> None:
        for state_id, parents in full_parents.items():
            conn.execute(
                sa.text("UPDATE states SET parents = :p WHERE id = :id"), {"p": json.dumps(parents), "id": state_id}
            )
            conn.execute(sa.text("DELETE FROM state_ancestors WHERE state_id = :id"), {"id": state_id})
            for ancestor in parents.values():
                conn.execute(
                    sa.text("INSERT INTO state_ancestors (ancestor_id, state_id) VALUES (:a, :s)"),
                    {"a": ancestor, "s": state_id},
                )
        downgrade_to(conn, "0005_api_keys")

    return work


def test_runs_started_before_migration_0006_finish_exactly(
    make_server: Callable[..., ServerProcess], namespace: str
) -> None:
    server = make_server()
    url = server.database_url or ""
    with httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=30
    ) as api:
        _legacy_graph(api, namespace)
        run_id = trigger(api, "legacy")
        for name, outputs in (("A", {"x": "X"}), ("B", {"y": "Y"}), ("C", {"z": "Z"})):
            [state] = claim_all(api, name, count=1)
            assert executed(api, state, outputs).status_code == 200
        full = {s["state_id"]: s["parents"] for s in states(api, run_id)}  # a, b, c and the waiting d
    server.stop()
    on_database(url, _make_rows_legacy(full))
    server.start()  # migrates to the newest schema again; the rows stay as the old code wrote them
    with httpx.Client(
        base_url=f"{server.url}/v0/namespace/{namespace}", headers={"x-api-key": server.api_key}, timeout=30
    ) as api:
        [d] = claim_all(api, "D", count=1)
        assert d["inputs"] == {"x": "X", "y": "Y"}
        executed(api, d, {"w": "W"})
        [f] = claim_all(api, "F", count=1)
        assert f["inputs"] == {"x": "X", "z": "Z", "w": "W"}  # built from an old row: its ancestors' rows
        assert claim(api, "U") == []  # f descends from b and still runs
        executed(api, f, {"f": "F"})
        [u] = claim_all(api, "U", count=1)
        assert u["inputs"] == {"x": "X", "y": "Y"}
        executed(api, u, {"t": "T"})
        [g] = claim_all(api, "G", count=1)
        assert g["inputs"] == {"x": "X", "t": "T"}
        executed(api, g, {"g": "G"})
        assert run(api, run_id)["status"] == "SUCCESS"
        found = {s["identifier"]: s for s in states(api, run_id)}
        ids = {ident: s["state_id"] for ident, s in found.items()}
        assert found["f"]["parents"] == {k: ids[k] for k in ("a", "b", "c", "d")}
        assert found["g"]["parents"] == {k: ids[k] for k in ("a", "b", "u")}
        assert stored_parents(url, ids["f"]) == {"b": ids["b"], "d": ids["d"]}  # new rows keep unite targets + parent
        counts_match_states(api, url, run_id)  # counted before the migration, then kept up to date
