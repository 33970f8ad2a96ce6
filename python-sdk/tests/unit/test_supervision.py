"""A runtime never dies quietly: answers it cannot read are retried, and a loop that fails is logged
and started again. Faults come from a small real HTTP server (fake_server.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from exospherehost import BaseNode, Runtime
from exospherehost import runtime as runtime_module
from fake_server import FakeServer, Reply, wait_until
from fake_state_manager import FakeStateManager
from pydantic import BaseModel


class Echo(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=self.inputs.text)


FAULTS = {
    "corrupt gzip": Reply(raw=b"\x1f\x8b not gzip at all", headers={"content-encoding": "gzip"}),
    "truncated body": Reply(raw=b'{"states": [', truncated=True),
    "not JSON": Reply(raw=b"<html>proxy error</html>"),
    "dropped connection": Reply(drop=True),
    "JSON of another shape": Reply(body=["unexpected"]),
}


@pytest.fixture
async def state_manager() -> Any:
    fake = FakeStateManager()
    server = FakeServer(fake.handle)
    await server.start()
    yield fake, server
    await server.stop()


@pytest.mark.parametrize("fault", list(FAULTS), ids=list(FAULTS))
async def test_claims_go_on_after_an_answer_that_cannot_be_read(state_manager: Any, fault: str) -> None:
    fake, server = state_manager
    fake.faults["enqueue"] = [FAULTS[fault], FAULTS[fault]]
    runtime = Runtime("ns", "rt", [Echo], state_manager_uri=server.url, key="k")
    task = runtime.start()
    await wait_until(lambda: not fake.faults["enqueue"], timeout=60)
    state_id = fake.add_state("Echo", {"text": "after the fault"})
    await wait_until(lambda: state_id in fake.results, timeout=60)
    runtime.stop()
    assert task is not None
    await asyncio.wait_for(task, 60)


async def test_a_failing_loop_is_logged_and_started_again(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0

    async def flaky_loop() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise KeyError("a bug in the loop")

    with caplog.at_level(logging.ERROR, logger="exospherehost"):
        await asyncio.wait_for(runtime_module._supervised("test loop", flaky_loop), 60)
    assert runs == 2
    [record] = [r for r in caplog.records if "test loop failed unexpectedly" in r.getMessage()]
    assert record.exc_info is not None and isinstance(record.exc_info[1], KeyError)
