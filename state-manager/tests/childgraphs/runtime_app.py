"""A runtime process for the child graph tests: `python runtime_app.py NAMESPACE`.

`Split` fans out `width` items; `Double` (the child graph's node) doubles one, except that the first
attempt for the item named by $FAIL_ITEM fails; `Collect` echoes what the child run gave it. Each
execution appends a line to $CHILD_LOG, so a test waits for those events, never for a time.
"""

from __future__ import annotations

import os
import sys

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel


def _note(line: str) -> bool:
    """Append `line`; whether it was there already."""
    path = os.environ["CHILD_LOG"]
    with open(path) as log:
        seen = line in log.read().splitlines()
    with open(path, "a") as log:
        log.write(line + "\n")
    return seen


class Split(BaseNode):
    class Inputs(BaseModel):
        width: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.width))]


class Double(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        doubled: str

    async def execute(self) -> Outputs:
        if self.inputs.item == os.environ.get("FAIL_ITEM") and not _note(f"fail {self.inputs.item}"):
            raise RuntimeError(f"item {self.inputs.item} fails once")
        _note(f"double {self.inputs.item}")
        return self.Outputs(doubled=str(2 * int(self.inputs.item)))


class Collect(BaseNode):
    class Inputs(BaseModel):
        doubled: str

    class Outputs(BaseModel):
        seen: str

    async def execute(self) -> Outputs:
        _note(f"collect {self.inputs.doubled}")
        return self.Outputs(seen=self.inputs.doubled)


Runtime(
    namespace=sys.argv[1],
    name="child-graphs-runtime",
    nodes=[Split, Double, Collect],
    workers=4,
    lease_seconds=3,
    shutdown_grace_seconds=1,
).start()
