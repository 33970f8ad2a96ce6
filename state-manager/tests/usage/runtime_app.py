"""A runtime process for the usage tests: `python runtime_app.py NAMESPACE`.

`Ask` reports the usage its inputs name, as a node calling a model provider would, in two calls
(to show that reports add up over an attempt). `Shaky` reports its usage and then fails while its
`fail_until` input is above the attempt's number (its `attempt` input, from the retry count), so a
failed attempt's usage is sent with its error.
"""

from __future__ import annotations

import sys

from exospherehost import BaseNode, Runtime
from pydantic import BaseModel


class Ask(BaseNode):
    class Inputs(BaseModel):
        question: str
        tokens_in: str
        tokens_out: str
        cost: str

    class Outputs(BaseModel):
        answer: str

    async def execute(self) -> Outputs:
        self.report_usage(input_tokens=int(self.inputs.tokens_in), requests=1)
        self.report_usage(output_tokens=int(self.inputs.tokens_out), cost_usd=float(self.inputs.cost))
        return self.Outputs(answer=f"answer to {self.inputs.question}")


class Shaky(BaseNode):
    class Inputs(BaseModel):
        answer: str

    class Outputs(BaseModel):
        checked: str

    tries = 0

    async def execute(self) -> Outputs:
        self.report_usage(input_tokens=10, output_tokens=1, requests=1, cost_usd=0.5)
        Shaky.tries += 1
        if Shaky.tries == 1:
            raise RuntimeError("the provider answered nonsense")
        return self.Outputs(checked=self.inputs.answer)


Runtime(
    namespace=sys.argv[1],
    name="usage-runtime",
    nodes=[Ask, Shaky],
    workers=4,
    lease_seconds=5,
    shutdown_grace_seconds=1,
).start()
