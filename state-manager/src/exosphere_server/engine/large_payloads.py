"""Reading large payloads (values kept apart from the state rows) when someone asks for them.

Listings, claims of other states and the dashboard's pages show a large value by its size; these
read its text: a state with every value whole (`GET .../state/{id}?payloads=true`), or one value
alone (`GET .../state/{id}/payload/{side}/{field}`, what the dashboard's link opens).

Example::

    state = await with_payloads(ctx, await runs.get_state(ctx, "ns", state_id))
    state.outputs["report"]  # the whole text, however long
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from exosphere_server.engine.context import EngineContext
from exosphere_server.engine.errors import NotFound
from exosphere_server.storage.payloads import PayloadMissing, is_ref, ref_key
from exosphere_server.storage.records import StateRecord

Side = Literal["inputs", "outputs"]


async def with_payloads(ctx: EngineContext, state: StateRecord) -> StateRecord:
    """The state with the text of its large inputs and outputs in place of their references."""
    try:
        async with ctx.storage.reader() as tx:
            inputs = await tx.load_payloads(state.run_id, state.inputs)
            outputs = await tx.load_payloads(state.run_id, state.outputs)
    except PayloadMissing as exc:
        raise NotFound(str(exc)) from exc
    return replace(state, inputs=inputs, outputs=outputs)


async def payload_text(ctx: EngineContext, state: StateRecord, side: Side, field: str) -> str:
    """One input or output value of the state, whole: read from the payload store when kept apart."""
    values = state.inputs if side == "inputs" else state.outputs
    if field not in values:
        raise NotFound(f"State {state.id} has no {side[:-1]} field {field!r}")
    value = values[field]
    if not is_ref(value):
        return str(value)
    try:
        async with ctx.storage.reader() as tx:
            return (await tx.payload_texts(state.run_id, [ref_key(value)]))[ref_key(value)]
    except PayloadMissing as exc:
        raise NotFound(str(exc)) from exc
