"""A real runtime (the Python SDK) for the key tests: one node that reads a secret, and fails on "fail"."""

from __future__ import annotations

import os

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel


class Echo(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    class Secrets(BaseModel):
        token: str

    async def execute(self) -> BaseModel:
        if self.inputs.text == "fail":
            raise RuntimeError("asked to fail")
        return self.Outputs(text=f"{self.inputs.text} ({len(self.secrets.token)})")


if __name__ == "__main__":
    Runtime(namespace=os.environ["EXOSPHERE_NAMESPACE"], name="keys-test-runtime", nodes=[Echo]).start()
