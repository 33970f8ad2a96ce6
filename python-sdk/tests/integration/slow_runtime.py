"""A runtime whose node takes a while, for the SIGTERM test: `python slow_runtime.py NAMESPACE MARKER`."""

import asyncio
import sys
from pathlib import Path

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel


class Slow(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        Path(sys.argv[2]).write_text("started")  # noqa: ASYNC240 - a test marker, microseconds
        await asyncio.sleep(2)
        return self.Outputs(text=self.inputs.text.upper())


Runtime(namespace=sys.argv[1], name="slow", nodes=[Slow], shutdown_grace_seconds=20).start()
