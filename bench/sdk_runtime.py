"""The runtime process of the SDK benchmark; runs unchanged under our SDK and the published 0.0.3 client.

    python bench/sdk_runtime.py NAMESPACE
"""

import sys

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel


class Hop(BaseNode):
    class Inputs(BaseModel):
        x: str

    class Outputs(BaseModel):
        x: str

    async def execute(self):
        return self.Outputs(x=self.inputs.x)


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


Runtime(namespace=sys.argv[1], name="bench", nodes=[Hop, Fan, Gather], batch_size=64, workers=32).start()
