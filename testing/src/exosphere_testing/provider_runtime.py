"""A runtime whose node calls a `SimulatedProvider`, as node code calls a model provider: on a 429 it
raises `RateLimitedSignal` with the wait the provider asked for.

    python -m exosphere_testing.provider_runtime NAMESPACE PROVIDER_URL [LIMIT_NAME]

Node `CallProvider` takes inputs `tokens` (what to spend) and `who`, and returns `who` as `done`.
"""

from __future__ import annotations

import sys

import httpx
from exospherehost import RateLimitedSignal, Runtime, retry_after_seconds
from exospherehost.node import BaseNode
from pydantic import BaseModel

PROVIDER_URL = ""
LIMIT_NAME = "provider"
_client: httpx.AsyncClient | None = None


class CallProvider(BaseNode):
    class Inputs(BaseModel):
        tokens: str
        who: str

    class Outputs(BaseModel):
        done: str

    async def execute(self) -> CallProvider.Outputs:
        global _client
        if _client is None:
            _client = httpx.AsyncClient(base_url=PROVIDER_URL, timeout=30)
        answer = await _client.post("/v1/call", json={"tokens": int(self.inputs.tokens)})
        if answer.status_code == 429:
            raise RateLimitedSignal(LIMIT_NAME, retry_after_seconds=retry_after_seconds(answer) or 1.0)
        answer.raise_for_status()
        return self.Outputs(done=self.inputs.who)


def main() -> None:
    global PROVIDER_URL, LIMIT_NAME
    namespace, PROVIDER_URL = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        LIMIT_NAME = sys.argv[3]
    Runtime(namespace=namespace, name="provider-caller", nodes=[CallProvider], batch_size=16, workers=32).start()


if __name__ == "__main__":
    main()
