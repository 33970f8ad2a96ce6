"""A runtime process for the signal tests: `python runtime_app.py NAMESPACE`.

`Approve` waits for the signal `approval` (with the time-out its `timeout` input names, in seconds; empty:
none) and, woken, outputs the payload. It appends `wait ITEM` to $SIGNALS_LOG each time it starts to wait
and `signal ITEM k=v,...` when it runs with a signal, so a test waits for those events instead of a time.
"""

from __future__ import annotations

import os
import sys

from exospherehost import BaseNode, Runtime, WaitForSignal
from pydantic import BaseModel


def _note(line: str) -> None:
    with open(os.environ["SIGNALS_LOG"], "a") as log:
        log.write(line + "\n")


class Split(BaseNode):
    class Inputs(BaseModel):
        width: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(item=str(i)) for i in range(int(self.inputs.width))]


class Approve(BaseNode):
    class Inputs(BaseModel):
        item: str
        timeout: str = ""

    class Outputs(BaseModel):
        item: str
        approved: str
        by: str

    async def execute(self) -> Outputs:
        if self.signal is None:
            _note(f"wait {self.inputs.item}")
            raise WaitForSignal("approval", timeout_seconds=float(self.inputs.timeout) if self.inputs.timeout else None)
        _note(f"signal {self.inputs.item} " + ",".join(f"{k}={v}" for k, v in sorted(self.signal.items())))
        return self.Outputs(item=self.inputs.item, approved=self.signal["approved"], by=self.signal.get("by", ""))


Runtime(
    namespace=sys.argv[1],
    name="signals-runtime",
    nodes=[Split, Approve],
    workers=2,
    lease_seconds=3,
    shutdown_grace_seconds=1,
).start()
