"""The runtime against a scripted state manager: claims, leases, delivery and shutdown."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from typing import Any

import pytest
from exospherehost import AuthenticationError, BaseNode, Runtime
from exospherehost.runtime import CLAIM_WAIT_MS
from fake_server import FakeServer, Reply, Request, wait_until
from fake_state_manager import FakeStateManager
from pydantic import BaseModel

pytestmark = pytest.mark.asyncio

Fake = tuple[FakeStateManager, FakeServer]


class Echo(BaseNode):
    class Inputs(BaseModel):
        text: str

    class Outputs(BaseModel):
        text: str

    async def execute(self) -> Outputs:
        return self.Outputs(text=self.inputs.text)


class Sleepy(BaseNode):
    started = 0  # how many executions began: tests wait for it rather than for a time

    class Inputs(BaseModel):
        seconds: str

    async def execute(self) -> None:
        Sleepy.started += 1
        await asyncio.sleep(float(self.inputs.seconds))


class BlockingSleepy(BaseNode):
    class Inputs(BaseModel):
        seconds: str

    def execute(self) -> None:  # type: ignore[override]
        time.sleep(float(self.inputs.seconds))


class Secretive(BaseNode):
    class Outputs(BaseModel):
        length: str

    class Secrets(BaseModel):
        token: str

    async def execute(self) -> Outputs:
        return self.Outputs(length=str(len(self.secrets.token)))


def _runtime(server: FakeServer, nodes: list[type[BaseNode]] | None = None, **kwargs: Any) -> Runtime:
    settings: dict[str, Any] = {"state_manager_uri": server.url, "key": "k", "workers": 2} | kwargs
    return Runtime("ns", "rt", nodes or [Echo, Sleepy, BlockingSleepy, Secretive], **settings)


async def _stop(runtime: Runtime, task: asyncio.Task[None] | None) -> None:
    assert task is not None
    runtime.stop()
    await asyncio.wait_for(task, 10)


def _result_calls(server: FakeServer, state_id: str) -> list[object]:
    """Calls that reported a result for `state_id`: its own `executed` call or a batch that carried it."""
    single = server.calls(f"/state/{state_id}/executed")
    batched = [
        call
        for call in server.calls("/states/executed")
        if any(item.get("state_id") == state_id for item in (call.body or {}).get("results", []))
    ]
    return [*single, *batched]


async def test_registration_sends_the_protocol_body(state_manager: Fake) -> None:
    fake, server = state_manager
    runtime = _runtime(server, [Echo, Secretive])
    task = runtime.start()
    await wait_until(lambda: bool(fake.registrations))
    await _stop(runtime, task)
    body = fake.registrations[0]
    assert server.calls("/v0/namespace/ns/nodes/")[0].method == "PUT"
    assert body["runtime_name"] == "rt" and body["runtime_namespace"] == "ns"
    assert [node["name"] for node in body["nodes"]] == ["Echo", "Secretive"]
    assert body["nodes"][1] == {
        "name": "Secretive",
        "namespace": "ns",
        "inputs_schema": Secretive.Inputs.model_json_schema(),
        "outputs_schema": Secretive.Outputs.model_json_schema(),
        "secrets": ["token"],
    }


async def test_a_claimed_state_is_executed_and_reported_with_its_lease(state_manager: Fake) -> None:
    fake, server = state_manager
    runtime = _runtime(server)
    task = runtime.start()
    state_id = fake.add_state("Echo", {"text": "hi"})
    await wait_until(lambda: state_id in fake.results)
    await _stop(runtime, task)
    endpoint, body = fake.results[state_id]
    assert endpoint == "executed"
    assert body["outputs"] == [{"text": "hi"}]
    assert body["lease_id"].startswith(f"lease-{state_id}")
    claim = fake.claims[0]
    assert claim["wait_ms"] == CLAIM_WAIT_MS and claim["lease_ms"] == 60_000
    assert sorted(claim["nodes"]) == ["BlockingSleepy", "Echo", "Secretive", "Sleepy"]


async def test_a_stopped_runtime_closes_every_connection_and_leaves_no_session_open() -> None:
    # Without long-polls, so that no claim is still held open by the server when the runtime stops.
    fake = FakeStateManager(long_poll=False)
    server = FakeServer(fake.handle)
    await server.start()
    gc.collect()  # what earlier tests left behind is not this runtime's to answer for
    loop = asyncio.get_running_loop()
    complaints: list[str] = []
    loop.set_exception_handler(lambda _, context: complaints.append(str(context.get("message"))))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            runtime = _runtime(server, poll_interval=0.01)
            task = runtime.start()
            ids = [fake.add_state("Echo", {"text": str(i)}) for i in range(20)]
            await wait_until(lambda: all(state_id in fake.results for state_id in ids))
            assert server.open_connections > 0
            await _stop(runtime, task)
            await wait_until(lambda: server.open_connections == 0)
            del runtime, task
            gc.collect()
    finally:
        loop.set_exception_handler(None)
        await server.stop()
    assert complaints == []
    assert [str(w.message) for w in caught if "nclosed" in str(w.message)] == []


async def test_a_state_arriving_during_a_long_poll_starts_at_once(state_manager: Fake) -> None:
    fake, server = state_manager
    runtime = _runtime(server)
    task = runtime.start()
    await wait_until(lambda: bool(fake.claims))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    state_id = fake.add_state("Echo", {"text": "x"})
    await wait_until(lambda: state_id in fake.results)
    await _stop(runtime, task)
    assert time.monotonic() - started < 0.5
    assert len(fake.claims) <= 3  # no polling storm while idle


async def test_secrets_are_fetched_for_nodes_that_declare_them(state_manager: Fake) -> None:
    fake, server = state_manager
    fake.secrets = {"token": "abcdef"}
    runtime = _runtime(server)
    task = runtime.start()
    state_id = fake.add_state("Secretive")
    await wait_until(lambda: state_id in fake.results)
    await _stop(runtime, task)
    assert fake.results[state_id][1]["outputs"] == [{"length": "6"}]
    assert len(server.calls(f"/state/{state_id}/secrets")) == 1


async def test_an_undeliverable_result_is_retried_until_accepted(state_manager: Fake) -> None:
    fake, server = state_manager
    fake.faults["executed"] = [Reply(503), Reply(drop=True), Reply(502), Reply(429)]
    runtime = _runtime(server)
    task = runtime.start()
    state_id = fake.add_state("Echo", {"text": "kept"})
    await wait_until(lambda: state_id in fake.results)
    await _stop(runtime, task)
    assert fake.results[state_id][1]["outputs"] == [{"text": "kept"}]
    assert len(_result_calls(server, state_id)) == 5


async def test_a_result_survives_a_server_restart(state_manager: Fake) -> None:
    fake, server = state_manager
    runtime = _runtime(server)
    task = runtime.start()
    state_id = fake.add_state("Sleepy", {"seconds": "0.3"})
    await wait_until(lambda: state_id in fake.held)
    await server.stop()
    await asyncio.sleep(0.8)  # the node finishes while the server is down
    await server.start()
    await wait_until(lambda: state_id in fake.results, timeout=10)
    await _stop(runtime, task)
    assert fake.results[state_id][0] == "executed"


async def test_a_lost_lease_discards_the_result_and_the_runtime_goes_on(state_manager: Fake) -> None:
    fake, server = state_manager
    runtime = _runtime(server)
    task = runtime.start()
    first = fake.add_state("Sleepy", {"seconds": "0.2"})
    await wait_until(lambda: first in fake.held)
    fake.lost.add(first)
    await wait_until(lambda: len(_result_calls(server, first)) == 1)
    second = fake.add_state("Echo", {"text": "next"})
    await wait_until(lambda: second in fake.results)
    await _stop(runtime, task)
    assert first not in fake.results
    assert len(_result_calls(server, first)) == 1  # 409 is final


class Failing(BaseNode):
    async def execute(self) -> None:
        raise ValueError("cannot read b'abc\\xff' as \udcff")


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


async def test_secrets_refused_with_409_give_the_state_up_without_running_it(
    state_manager: Fake, caplog: pytest.LogCaptureFixture
) -> None:
    fake, server = state_manager
    fake.faults["secrets"] = [Reply(409, {"detail": "Secrets of graph g cannot be decrypted; the state is ERRORED"})]
    runtime = _runtime(server)
    task = runtime.start()
    state_id = fake.add_state("Secretive")
    await wait_until(lambda: _logged(caplog, f"Giving up state {state_id}"), timeout=30)
    echo_id = fake.add_state("Echo", {"text": "next"})
    await wait_until(lambda: echo_id in fake.results, timeout=30)
    await _stop(runtime, task)
    assert _logged(caplog, "409 Secrets of graph g cannot be decrypted; the state is ERRORED")
    assert len(server.calls(f"/state/{state_id}/secrets")) == 1
    assert state_id not in fake.results and not _result_calls(server, state_id)
    assert not server.calls(f"/state/{state_id}/errored") and state_id not in fake.released


async def test_secrets_failing_with_500_again_and_again_fail_the_state_after_a_few_attempts(
    state_manager: Fake,
) -> None:
    fake, server = state_manager
    fake.faults["secrets"] = [Reply(500, {"detail": "internal server error"}) for _ in range(50)]
    runtime = _runtime(server)
    task = runtime.start()
    state_id = fake.add_state("Secretive")
    await wait_until(lambda: state_id in fake.results, timeout=30)
    await _stop(runtime, task)
    endpoint, body = fake.results[state_id]
    assert endpoint == "errored"
    assert body["error"] == f"ApiError: Reading secrets for state {state_id} failed: 500 internal server error"
    assert len(server.calls(f"/state/{state_id}/secrets")) == 5


async def test_an_error_report_the_server_refuses_is_dropped_with_a_logged_error(
    state_manager: Fake, caplog: pytest.LogCaptureFixture
) -> None:
    fake, server = state_manager
    fake.faults["errored"] = [Reply(422, {"detail": "error: text must not contain NUL"})]
    runtime = _runtime(server, [Failing, Echo])
    task = runtime.start()
    state_id = fake.add_state("Failing")
    await wait_until(lambda: _logged(caplog, f"Could not report state {state_id}"), timeout=30)
    echo_id = fake.add_state("Echo", {"text": "next"})
    await wait_until(lambda: echo_id in fake.results, timeout=30)
    await _stop(runtime, task)
    [report] = server.calls(f"/state/{state_id}/errored")  # refused once, not retried
    # The lone surrogate in the node's error was escaped, or the report could not have been sent at all.
    assert report.body["error"] == "ValueError: cannot read b'abc\\xff' as \\udcff"
    assert _logged(caplog, "422 error: text must not contain NUL")


async def test_heartbeats_keep_the_lease_while_execute_runs(state_manager: Fake) -> None:
    fake, server = state_manager
    runtime = _runtime(server, lease_seconds=3)
    task = runtime.start()
    async_id = fake.add_state("Sleepy", {"seconds": "2.5"})
    thread_id = fake.add_state("BlockingSleepy", {"seconds": "2.5"})
    await wait_until(lambda: async_id in fake.results and thread_id in fake.results, timeout=10)
    await _stop(runtime, task)
    assert fake.heartbeats.count(async_id) >= 2
    assert fake.heartbeats.count(thread_id) >= 2
    heartbeat = server.calls(f"/state/{async_id}/heartbeat")[0].body
    assert heartbeat == {"lease_id": fake.results[async_id][1]["lease_id"], "lease_ms": 3000}


async def test_a_heartbeat_refused_with_409_cancels_the_running_node(state_manager: Fake) -> None:
    fake, server = state_manager
    runtime = _runtime(server, lease_seconds=3)
    task = runtime.start()
    state_id = fake.add_state("Sleepy", {"seconds": "30"})
    await wait_until(lambda: state_id in fake.held)
    fake.lost.add(state_id)
    await wait_until(lambda: bool(server.calls(f"/state/{state_id}/heartbeat")), timeout=5)
    echo_id = fake.add_state("Echo", {"text": "after"})
    await wait_until(lambda: echo_id in fake.results)
    await _stop(runtime, task)
    assert not _result_calls(server, state_id)


async def test_states_are_claimed_only_for_free_slots(state_manager: Fake) -> None:
    fake, server = state_manager
    for _ in range(10):
        fake.add_state("Sleepy", {"seconds": "0.3"})
    runtime = _runtime(server, workers=2, batch_size=16)
    task = runtime.start()
    await wait_until(lambda: len(fake.held) >= 2)
    await asyncio.sleep(0.1)
    assert len(fake.held) <= 3  # 2 workers + a prefetch of 1
    await wait_until(lambda: len(fake.results) == 10, timeout=10)
    await _stop(runtime, task)


async def test_fast_nodes_are_claimed_in_batches_even_with_few_workers(state_manager: Fake) -> None:
    # A claim costs the server about the same for one state as for fifty: when nodes finish faster
    # than a claim round trip, the runtime claims ahead up to batch_size, whatever its workers.
    fake, server = state_manager

    async def a_round_trip_of_20_ms(request: Request) -> Reply:
        await asyncio.sleep(0.02)
        return await fake.handle(request)

    server.handler = a_round_trip_of_20_ms
    ids = [fake.add_state("Echo", {"text": str(i)}) for i in range(200)]
    runtime = _runtime(server, workers=2, batch_size=16)
    task = runtime.start()
    await wait_until(lambda: all(state_id in fake.results for state_id in ids), timeout=60)
    await _stop(runtime, task)
    asked = [claim["batch_size"] for claim in fake.claims]
    assert asked[0] == 3  # 2 workers + a prefetch of 1, before anything is measured
    assert max(asked) == 16


async def test_the_default_arguments_claim_fast_nodes_in_batches_beyond_the_original_16(state_manager: Fake) -> None:
    # `Runtime(...)` as most people write it (4 workers, no batch_size): fast nodes get claims up to
    # 100 states, so the defaults keep up with a tuned runtime; before anything is measured a claim
    # still asks only for the free slots and half as many again.
    fake, server = state_manager

    async def a_round_trip_of_20_ms(request: Request) -> Reply:
        await asyncio.sleep(0.02)
        return await fake.handle(request)

    server.handler = a_round_trip_of_20_ms
    ids = [fake.add_state("Echo", {"text": str(i)}) for i in range(600)]
    runtime = Runtime("ns", "rt", [Echo], state_manager_uri=server.url, key="k")
    task = runtime.start()
    await wait_until(lambda: all(state_id in fake.results for state_id in ids), timeout=60)
    await _stop(runtime, task)
    asked = [claim["batch_size"] for claim in fake.claims]
    assert asked[0] == 6  # 4 workers + a prefetch of 2, before anything is measured
    assert 16 < max(asked) <= 100


async def test_a_result_on_its_way_frees_its_worker_and_workers_still_bound_the_running_nodes(
    state_manager: Fake,
) -> None:
    # The server refuses results for a while: the workers go on to the next states meanwhile, and
    # never more than `workers` nodes run together.
    fake, server = state_manager
    fake.faults["executed"] = [Reply(503)] * 3
    ids = [fake.add_state("Sleepy", {"seconds": "0.05"}) for _ in range(12)]
    running = 0
    most = 0
    started_before_any_result = 0

    class Counted(Sleepy):
        async def execute(self) -> None:
            nonlocal running, most, started_before_any_result
            running += 1
            most = max(most, running)
            started_before_any_result += not fake.results
            try:
                await super().execute()
            finally:
                running -= 1

    Counted.__name__ = "Sleepy"
    runtime = _runtime(server, [Counted], workers=2)
    task = runtime.start()
    await wait_until(lambda: all(state_id in fake.results for state_id in ids), timeout=60)
    await _stop(runtime, task)
    assert most == 2
    assert started_before_any_result > 2


async def test_graceful_shutdown_hands_back_unstarted_states_and_finishes_running_ones(state_manager: Fake) -> None:
    fake, server = state_manager
    ids = [fake.add_state("Sleepy", {"seconds": "0.5"}) for _ in range(6)]
    runtime = _runtime(server, workers=2)
    task = runtime.start()
    await wait_until(lambda: len(fake.held) == 3)
    await asyncio.sleep(0.1)
    await _stop(runtime, task)
    finished = [state_id for state_id in ids if state_id in fake.results]
    assert len(finished) == 2
    assert len(fake.released) == 1
    assert len(fake.ready) == 4 and not fake.held


async def test_nodes_still_running_after_the_grace_period_are_handed_back(state_manager: Fake) -> None:
    fake, server = state_manager
    state_id = fake.add_state("Sleepy", {"seconds": "30"})
    runtime = _runtime(server, shutdown_grace_seconds=0.2)
    task = runtime.start()
    await wait_until(lambda: state_id in fake.held)
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await _stop(runtime, task)
    assert time.monotonic() - started < 2
    assert fake.released == [state_id]


async def test_cancelling_the_task_also_hands_work_back(state_manager: Fake) -> None:
    fake, server = state_manager
    state_id = fake.add_state("Sleepy", {"seconds": "30"})
    runtime = _runtime(server, shutdown_grace_seconds=0.1)
    started = Sleepy.started
    task = runtime.start()
    assert task is not None
    # Running, not merely handed out: a claim cancelled in flight never reaches the runtime to be handed back.
    await wait_until(lambda: Sleepy.started > started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert fake.released == [state_id]


async def test_an_older_server_without_leases_is_polled_every_poll_interval(state_manager: Fake) -> None:
    fake, server = state_manager
    fake.leases = False
    fake.long_poll = False
    runtime = _runtime(server, poll_interval=0.2)
    task = runtime.start()
    state_id = fake.add_state("Echo", {"text": "old"})
    await wait_until(lambda: state_id in fake.results)
    await asyncio.sleep(1.0)
    await _stop(runtime, task)
    assert "lease_id" not in fake.results[state_id][1]
    assert 3 <= len(fake.claims) <= 8  # paced by poll_interval, not a busy loop
    assert not server.calls("/heartbeat")


async def test_claiming_backs_off_while_the_server_is_down(state_manager: Fake) -> None:
    fake, server = state_manager
    runtime = _runtime(server)
    task = runtime.start()
    await wait_until(lambda: bool(fake.claims))
    await server.stop()
    await asyncio.sleep(1.5)
    attempts_while_down = len(server.requests)
    await server.start()
    state_id = fake.add_state("Echo", {"text": "back"})
    await wait_until(lambda: state_id in fake.results, timeout=10)
    await _stop(runtime, task)
    assert attempts_while_down < 15


async def test_registration_waits_for_a_server_that_is_not_up_yet(state_manager: Fake) -> None:
    fake, server = state_manager
    await server.stop()
    runtime = _runtime(server)
    task = runtime.start()
    await asyncio.sleep(0.5)
    await server.start()
    state_id = fake.add_state("Echo", {"text": "late"})
    await wait_until(lambda: state_id in fake.results, timeout=10)
    await _stop(runtime, task)
    assert len(fake.registrations) == 1


async def test_a_refused_api_key_fails_start_clearly(state_manager: Fake) -> None:
    fake, server = state_manager
    fake.faults["nodes"] = [Reply(401, {"detail": "Invalid API key"})]
    task = _runtime(server).start()
    assert task is not None
    with pytest.raises(AuthenticationError, match="Invalid API key"):
        await task


async def test_outputs_the_server_refuses_are_reported_as_errored(state_manager: Fake) -> None:
    fake, server = state_manager
    # The batch call is refused as a whole, then the result sent on its own is refused too.
    fake.faults["executed"] = [Reply(422, {"detail": "outputs must be strings"})] * 2
    runtime = _runtime(server)
    task = runtime.start()
    state_id = fake.add_state("Echo", {"text": "x"})
    await wait_until(lambda: state_id in fake.results)
    await _stop(runtime, task)
    endpoint, body = fake.results[state_id]
    assert endpoint == "errored"
    assert body["error"] == "ApiError: Reporting executed for state s0 (Echo) failed: 422 outputs must be strings"


_BLOCKING_SCRIPT = """
import asyncio, sys, threading
sys.path.insert(0, sys.argv[1])
from fake_server import FakeServer
from fake_state_manager import FakeStateManager
from pydantic import BaseModel
from exospherehost import BaseNode, Runtime

class Sleepy(BaseNode):
    class Inputs(BaseModel):
        seconds: str

    async def execute(self) -> None:
        print("running", flush=True)
        await asyncio.sleep(float(self.inputs.seconds))

fake = FakeStateManager()
fake.add_state("Sleepy", {"seconds": "0.5"})
ready = threading.Event()
box = {}

def serve():
    async def main():
        server = FakeServer(fake.handle)
        await server.start()
        box["url"] = server.url
        ready.set()
        await asyncio.sleep(60)
    asyncio.run(main())

threading.Thread(target=serve, daemon=True).start()
ready.wait(5)
runtime = Runtime("ns", "rt", [Sleepy], state_manager_uri=box["url"], key="k")
print("started", flush=True)
result = runtime.start()
print("returned", result, sorted(fake.results), flush=True)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
async def test_start_blocks_outside_an_event_loop_and_stops_gracefully_on_a_signal(signal_name: str) -> None:
    import signal
    import sys
    from pathlib import Path

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _BLOCKING_SCRIPT,
        str(Path(__file__).parent),
        stdout=asyncio.subprocess.PIPE,
        env={"EXOSPHERE_DISABLE_DEFAULT_LOGGING": "1", "PATH": ""},
    )
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 60) == b"started\n"
    # The signal comes while the node runs: waited for as an event, not assumed after a fixed delay.
    assert await asyncio.wait_for(process.stdout.readline(), 60) == b"running\n"
    process.send_signal(getattr(signal, signal_name))
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    assert output.decode().strip() == "returned None ['s0']"  # the running node was allowed to finish


async def test_stop_right_after_start_is_honoured(state_manager: Fake) -> None:
    _, server = state_manager
    runtime = _runtime(server)
    task = runtime.start()
    runtime.stop()
    assert task is not None
    await asyncio.wait_for(task, 5)
