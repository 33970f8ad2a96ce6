"""Many states written by the driver's own bulk path (`Tx._write_plain`, PostgreSQL's COPY) read back exactly
as SQLAlchemy's own path writes them, on a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa
from exosphere_server.storage.base import COPY_FROM_ROWS, Storage, new_id
from exosphere_server.storage.records import StateRecord
from exospherehost.statuses import StateStatus

JSON_COLUMNS = ("inputs", "outputs", "data", "parents", "carried", "signal", "usage", "limits")
# As text, not decoded: a JSON null and an SQL NULL must stay apart (a claim takes only `limits IS NULL`).
RAW_COLUMNS = ", ".join([*(f"CAST({name} AS TEXT)" for name in JSON_COLUMNS), "does_unites"])


def branch(index: int, shared_inputs: dict[str, object], shared_parents: dict[str, str]) -> StateRecord:
    """A state as a fan-out makes them: inputs and parents shared with its siblings, the rest its own."""
    return StateRecord(
        id=new_id(),
        namespace="ns",
        node_name="Work",
        identifier="work",
        graph_name="g",
        run_id="run-1",
        status=StateStatus.CREATED.value,
        inputs=shared_inputs,
        outputs={},
        parents=shared_parents,
        enqueue_after=1_000 + index,
        created_at=1_000,
        updated_at=1_000,
        fanout_id=f"f{index}",
        parent_id="p" * 24,
        carried={"plan": {"x": "root", "ü": "naïve ☃"}} if index % 2 else {},
        timeout_ms=None if index % 3 else 5_000,
        limits=[{"name": "llm", "key": "k", "tokens": index}] if index % 5 == 0 else None,
        does_unites=index % 7 == 0,
        fingerprint=f"fp-{index}" if index % 7 == 0 else None,
        signal=None,
        usage=None,
    )


async def raw_row(storage: Storage, state_id: str) -> tuple[object, ...]:
    """The stored text of the JSON columns (and one flag) of one state, as the database holds them."""
    async with storage.reader() as tx:
        query = sa.text(f"SELECT {RAW_COLUMNS} FROM states WHERE id = :id").columns()
        row = (await tx.conn.execute(query, {"id": state_id})).one()
    return tuple(row)


async def test_many_states_read_back_as_written_and_stored_as_sqlalchemy_stores_them(storage: Storage) -> None:
    inputs: dict[str, object] = {"prompt": "summarise ${x}", "n": "3"}
    parents = {"plan": "a" * 24, "split": "b" * 24}
    records = [branch(i, inputs, parents) for i in range(COPY_FROM_ROWS + 50)]  # the bulk path on both
    async with storage.transaction() as tx:
        await tx.insert_states(records)
    async with storage.reader() as tx:
        found = {s.id: s for s in await tx.get_states([r.id for r in records])}
        counts = await tx.run_counts(["run-1"])
    assert [found[r.id] for r in records] == records
    assert counts["run-1"].pending == len(records)

    # One state through SQLAlchemy's own INSERT (`insert_state_unless_duplicate`): the same text per column,
    # a missing signal or usage stored as JSON null and missing limits as SQL NULL, as before.
    for original in (records[1], records[5]):
        copy = replace(original, id=new_id(), fanout_id=original.fanout_id + "-again", fingerprint=None)
        async with storage.transaction() as tx:
            assert await tx.insert_state_unless_duplicate(copy)
        assert (await raw_row(storage, copy.id))[:-1] == (await raw_row(storage, original.id))[:-1]
    async with storage.reader() as tx:
        unlimited = (await tx.conn.execute(sa.text("SELECT count(*) FROM states WHERE limits IS NULL"))).scalar_one()
    assert unlimited == sum(1 for r in records if r.limits is None) + 1


async def test_a_batch_of_results_is_written_with_its_outputs_usage_and_counts(storage: Storage) -> None:
    shared: dict[str, object] = {"x": "1"}
    records = [branch(i, shared, {"plan": "a" * 24}) for i in range(300)]
    async with storage.transaction() as tx:
        await tx.insert_states(records)
    async with storage.transaction() as tx:  # claimed, as a runtime's claim would
        await tx.move_states(list((await tx.lock_states(sorted(r.id for r in records))).values()), StateStatus.QUEUED)
    async with storage.transaction() as tx:
        held = await tx.lock_states(sorted(r.id for r in records))
        finished = []
        for index, state in enumerate(held.values()):
            state.status = StateStatus.SUCCESS.value
            state.outputs = {"v": f"out {index}"}
            state.usage = {"input_tokens": 2} if index % 2 else None
            state.finished_at = 9_000
            finished.append((StateStatus.QUEUED.value, state))
        await tx.finish_states(finished)
    async with storage.reader() as tx:
        found = {s.id: s for s in await tx.get_states([r.id for r in records])}
        counts = await tx.run_counts(["run-1"])
        revisions = (await tx.conn.execute(sa.text("SELECT sum(revision) FROM states"))).scalar_one()
    assert [found[s.id] for _, s in finished] == [replace(s, updated_at=9_000) for _, s in finished]
    assert (counts["run-1"].success, counts["run-1"].pending) == (300, 0)
    assert counts["run-1"].usage.input_tokens == 2 * 150
    assert revisions == 3 * 300  # inserted, claimed, finished
