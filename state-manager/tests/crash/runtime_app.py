"""A runtime process for crash tests: `python runtime_app.py NAMESPACE [slow]`.

Every `execute` start is appended to $CRASH_LOG, so a test knows a node is running before it kills us.
"""

from __future__ import annotations

import asyncio
import os
import sys

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel

SLOW = len(sys.argv) > 2 and sys.argv[2] == "slow"


def _note(line: str) -> None:
    with open(os.environ["CRASH_LOG"], "a") as log:
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


class Work(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        out: str

    async def execute(self) -> Outputs:
        _note(f"work {self.inputs.item}")
        await asyncio.sleep(60 if SLOW else 0.05)
        return self.Outputs(out=f"done-{self.inputs.item}")


class Merge(BaseNode):
    class Inputs(BaseModel):
        width: str

    class Outputs(BaseModel):
        total: str

    async def execute(self) -> Outputs:
        return self.Outputs(total=self.inputs.width)


Runtime(
    namespace=sys.argv[1],
    name="crash-runtime",
    nodes=[Plan, Split, Work, Merge],
    workers=4,
    lease_seconds=3 if SLOW else 60,
    shutdown_grace_seconds=1,
).start()
