"""A runtime process for the live stream tests: `python runtime_app.py NAMESPACE`.

`Talk` streams `word0 `, `word1 `, … (`count` chunks); when its `gate` input names a file, it streams
the first half, then waits for that file to exist before the rest, so a test can read mid-way while
the node still runs. `Flaky` streams `try N` and fails its first attempt ($STREAMS_DIR/flaky marks it).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel


class Talk(BaseNode):
    class Inputs(BaseModel):
        count: str
        gate: str = ""

    class Outputs(BaseModel):
        said: str

    async def execute(self) -> Outputs:
        count = int(self.inputs.count)
        for i in range(count):
            if self.inputs.gate and i == count // 2:
                while not await asyncio.to_thread(Path(self.inputs.gate).exists):
                    await asyncio.sleep(0.05)  # a test creates the file once it has read the first half
            await self.stream(f"word{i} ")
        return self.Outputs(said=str(count))


class Flaky(BaseNode):
    class Outputs(BaseModel):
        ok: str

    async def execute(self) -> Outputs:
        marker = Path(os.environ["STREAMS_DIR"]) / "flaky"
        first = not marker.exists()
        marker.touch()
        await self.stream("try 1" if first else "try 2")
        if first:
            raise RuntimeError("first attempt fails on purpose")
        return self.Outputs(ok="yes")


Runtime(
    namespace=sys.argv[1],
    name="streams-runtime",
    nodes=[Talk, Flaky],
    workers=4,
    lease_seconds=30,  # outlives a server restart in the tests that make one
    shutdown_grace_seconds=1,
).start()
