"""A runtime process for the payload tests: `python runtime_app.py NAMESPACE`.

`Make` outputs `size` characters of a fixed pattern (`pattern_text`); `Relay` passes a small value on;
`Measure` reports the length and SHA-256 of the large text it received, alone and embedded in longer text.
"""

from __future__ import annotations

import hashlib
import sys

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel

PATTERN = "0123456789abcdefghijklmnopqrstuvwxyz"


def pattern_text(size: int) -> str:
    return (PATTERN * (size // len(PATTERN) + 1))[:size]


class Make(BaseNode):
    class Inputs(BaseModel):
        size: str

    class Outputs(BaseModel):
        data: str
        size: str

    async def execute(self) -> Outputs:
        return self.Outputs(data=pattern_text(int(self.inputs.size)), size=self.inputs.size)


class Relay(BaseNode):
    class Inputs(BaseModel):
        size: str

    class Outputs(BaseModel):
        size: str

    async def execute(self) -> Outputs:
        return self.Outputs(size=self.inputs.size)


class Measure(BaseNode):
    class Inputs(BaseModel):
        data: str
        wrapped: str

    class Outputs(BaseModel):
        length: str
        sha256: str
        wrapped_length: str
        wrapped_ends: str

    async def execute(self) -> Outputs:
        return self.Outputs(
            length=str(len(self.inputs.data)),
            sha256=hashlib.sha256(self.inputs.data.encode()).hexdigest(),
            wrapped_length=str(len(self.inputs.wrapped)),
            wrapped_ends=self.inputs.wrapped[:2] + self.inputs.wrapped[-1:],
        )


if __name__ == "__main__":
    Runtime(
        namespace=sys.argv[1],
        name="payloads-runtime",
        nodes=[Make, Relay, Measure],
        workers=2,
        shutdown_grace_seconds=1,
    ).start()
