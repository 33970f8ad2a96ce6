"""A runtime process for the run-control tests: `python runtime_app.py NAMESPACE`.

`Work` and `Sleepy` append `start ITEM` to $RUN_CONTROL_LOG when their `execute` begins and
`cancelled ITEM` when it is cancelled (asyncio cancellation, from the runtime), so a test waits for
those events instead of sleeping. Heartbeats come every second (a 3 s lease).
"""

from __future__ import annotations

import asyncio
import os
import sys

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel


def _note(line: str) -> None:
    with open(os.environ["RUN_CONTROL_LOG"], "a") as log:
        log.write(line + "\n")


class Plan(BaseNode):
    class Inputs(BaseModel):
        width: str

    class Outputs(BaseModel):
        width: str

    async def execute(self) -> Outputs:
        return self.Outputs(width=self.inputs.width)


class Split(BaseNode):
    class Inputs(BaseModel):
        width: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.width))]


async def _sleep_noting(item: str) -> None:
    _note(f"start {item}")
    try:
        await asyncio.sleep(600)
    except asyncio.CancelledError:
        _note(f"cancelled {item}")
        raise


class Work(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        out: str

    async def execute(self) -> Outputs:
        await _sleep_noting(f"work-{self.inputs.item}")
        return self.Outputs(out=self.inputs.item)


class Merge(BaseNode):
    class Inputs(BaseModel):
        width: str

    class Outputs(BaseModel):
        total: str

    async def execute(self) -> Outputs:
        _note("merge")
        return self.Outputs(total=self.inputs.width)


class Sleepy(BaseNode):
    class Inputs(BaseModel):
        name: str

    class Outputs(BaseModel):
        name: str

    async def execute(self) -> Outputs:
        await _sleep_noting(f"sleepy-{self.inputs.name}")
        return self.Outputs(name=self.inputs.name)


Runtime(
    namespace=sys.argv[1],
    name="run-control-runtime",
    nodes=[Plan, Split, Work, Merge, Sleepy],
    workers=4,
    lease_seconds=3,
    shutdown_grace_seconds=1,
).start()
