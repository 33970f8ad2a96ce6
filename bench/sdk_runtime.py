"""The runtime process of `make bench`; runs unchanged under our SDK and the published 0.0.3 client.

    python bench/sdk_runtime.py NAMESPACE [tuned|defaults]

`tuned` passes the project's chosen arguments (TUNED); `defaults` calls `Runtime(...)` with the
seed's default arguments, as a user who copies the README's example would. `Hop` reports the moment
its `execute` ran (`at`, seconds since the epoch) so that the benchmark can time every hop of a chain
from the runtime's side.
"""

import sys
import time

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel

TUNED = {"batch_size": 64, "workers": 32}


class Hop(BaseNode):
    class Inputs(BaseModel):
        x: str

    class Outputs(BaseModel):
        x: str
        at: str

    async def execute(self):
        return self.Outputs(x=self.inputs.x, at=repr(time.time()))


class Fan(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        x: str

    async def execute(self):
        return [self.Outputs(x=str(i)) for i in range(int(self.inputs.n))]


class Gather(BaseNode):
    class Inputs(BaseModel):
        n: str

    class Outputs(BaseModel):
        x: str

    async def execute(self):
        return self.Outputs(x=self.inputs.n)


if __name__ == "__main__":
    configuration = sys.argv[2] if len(sys.argv) > 2 else "tuned"
    if configuration not in ("tuned", "defaults"):
        sys.exit(f"unknown runtime configuration {configuration!r}: tuned or defaults")
    arguments = TUNED if configuration == "tuned" else {}
    Runtime(namespace=sys.argv[1], name="bench", nodes=[Hop, Fan, Gather], **arguments).start()
