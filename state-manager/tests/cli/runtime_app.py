"""A real runtime (the Python SDK) serving the nodes of the CLI tests; configured by environment.

Plan → Split (one branch per character) → Work (upper-cases; fails on "x") → Merge (unites Plan).
"""

from __future__ import annotations

import os

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel


class Plan(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> BaseModel:
        if self.inputs.text == "fail":
            raise RuntimeError("the plan cannot start: text is 'fail'")
        return self.Outputs(text=self.inputs.text)


class Split(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        item: str

    async def execute(self) -> list[BaseModel]:
        return [self.Outputs(item=char) for char in self.inputs.text]


class Work(BaseNode):
    class Inputs(BaseModel):
        item: str

    class Outputs(BaseModel):
        done: str

    class Secrets(BaseModel):
        token: str

    async def execute(self) -> BaseModel:
        if self.inputs.item == "x":
            raise ValueError("no x allowed")
        return self.Outputs(done=self.inputs.item.upper())


class Merge(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        summary: str

    async def execute(self) -> BaseModel:
        return self.Outputs(summary=f"merged {self.inputs.text}")


if __name__ == "__main__":
    Runtime(
        namespace=os.environ["EXOSPHERE_NAMESPACE"],
        name="cli-test-runtime",
        nodes=[Plan, Split, Work, Merge],
        lease_seconds=10,
        shutdown_grace_seconds=2,
    ).start()
