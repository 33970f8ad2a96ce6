"""Run counts are kept up to date by every move, in the same transaction: exact under concurrent
completions, also from two replicas on one PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from exosphere_testing import ServerProcess

from .helpers import claim, claim_all, counts_match_states, errored, executed, node, register, run, trigger, upsert

WIDTH = 120


@pytest.fixture
def replicas(
    backend: str, make_server: Callable[..., ServerProcess], namespace: str
) -> Iterator[tuple[str, list[httpx.Client]]]:
    """The database URL and clients of two servers on it (PostgreSQL); on SQLite (one server per file),
    of the same server twice."""
    first = make_server()
    second = make_server(first.database_url) if backend == "postgres" else first
    clients = [
        httpx.Client(base_url=f"{s.url}/v0/namespace/{namespace}", headers={"x-api-key": s.api_key}, timeout=30)
        for s in (first, second)
    ]
    yield first.database_url or "", clients
    for client in clients:
        client.close()


def test_counts_stay_exact_under_concurrent_completions_on_every_replica(
    replicas: tuple[str, list[httpx.Client]], namespace: str
) -> None:
    database_url, clients = replicas
    api = clients[0]
    register(
        api,
        {"Plan": ((), ("n",)), "Split": ((), ("item",)), "Work": (("item",), ("out",)), "Gather": ((), ("done",))},
    )
    upsert(
        api,
        "counted",
        [
            node("plan", "Plan", namespace, {}, ["split"]),
            node("split", "Split", namespace, {}, ["work"]),
            node("work", "Work", namespace, {"item": "${{ split.outputs.item }}"}, ["gather"]),
            node("gather", "Gather", namespace, {}, unites="plan", strategy="ALL_DONE"),
        ],
        retry_policy={"max_retries": 0},
    )
    run_id = trigger(api, "counted")
    [plan] = claim_all(api, "Plan", count=1)
    assert executed(api, plan, {"n": str(WIDTH)}).status_code == 200
    [split] = claim_all(api, "Split", count=1)
    assert executed(api, split, *({"item": str(i)} for i in range(WIDTH))).status_code == 200

    def worker(index: int) -> int:
        """Claim and finish Work states through one replica, alternating; every 7th ends in error."""
        client = clients[index % 2]
        done = 0
        while True:
            batch = claim(client, "Work", batch_size=4)
            if not batch:
                return done
            for state in batch:
                other = clients[(index + done) % 2]
                if int(state["inputs"]["item"]) % 7 == 0:
                    assert errored(other, state).status_code == 200
                else:
                    assert executed(other, state, {"out": "y"}).status_code == 200
                done += 1

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(worker, range(8))) == WIDTH
    counts_match_states(api, database_url, run_id)
    [gather] = claim_all(clients[1], "Gather", count=1)
    assert executed(clients[1], gather, {"done": "y"}).status_code == 200
    summary = run(api, run_id)
    assert (summary["success_count"], summary["errored_count"], summary["pending_count"]) == (
        1 + WIDTH + (WIDTH - len(range(0, WIDTH, 7))) + 1,  # plan, the split states, the works, gather
        len(range(0, WIDTH, 7)),
        0,
    )
    counts_match_states(clients[1], database_url, run_id)
