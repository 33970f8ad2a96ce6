"""Node classes: checks at construction, and how one state is executed."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Optional

import pytest
from exospherehost import BaseNode, ConfigurationError, Runtime
from exospherehost.node import Outcome, check_node_classes, describe_traceback, node_schema, run_node
from exospherehost.signals import PruneSignal, ReQueueAfterSignal
from pydantic import BaseModel

pytestmark = pytest.mark.asyncio


class Greet(BaseNode):
    class Inputs(BaseModel):
        name: str
        punctuation: str = "!"

    class Outputs(BaseModel):
        greeting: str

    async def execute(self) -> Outputs:
        return self.Outputs(greeting=f"Hello {self.inputs.name}{self.inputs.punctuation}")


class WithSecrets(BaseNode):
    class Outputs(BaseModel):
        token_length: str

    class Secrets(BaseModel):
        token: str

    async def execute(self) -> Outputs:
        return self.Outputs(token_length=str(len(self.secrets.token)))


def _runtime(nodes: list[type], **kwargs: object) -> Runtime:
    settings: dict[str, object] = {"state_manager_uri": "http://sm", "key": "k"} | kwargs
    return Runtime("ns", "rt", nodes, **settings)  # type: ignore[arg-type]


async def test_valid_node_classes_pass_the_checks() -> None:
    assert check_node_classes([Greet, WithSecrets]) == []
    runtime = _runtime([Greet, WithSecrets])
    assert runtime is not None


async def test_every_problem_is_reported_at_once_naming_class_and_field() -> None:
    class BadTypes(BaseNode):
        class Inputs(BaseModel):
            count: int
            maybe: Optional[str]  # noqa: UP045 - Optional is exactly what must be refused

        class Outputs(BaseModel):
            ok: str

        async def execute(self) -> None:
            return None

    class NoExecute(BaseNode):
        Secrets = dict  # type: ignore[assignment]

    with pytest.raises(ConfigurationError) as caught:
        _runtime([BadTypes, NoExecute, Greet, Greet, "NotAClass"], batch_size=0, workers=0, key=None)
    message = str(caught.value)
    assert isinstance(caught.value, ValueError)
    for expected in (
        "BadTypes.Inputs field 'count' must be annotated `str`, got int",
        "BadTypes.Inputs field 'maybe' must be annotated `str`",
        "NoExecute.Secrets must be a pydantic BaseModel subclass",
        "NoExecute does not implement execute()",
        "Duplicate node class name 'Greet'",
        "'NotAClass' is not a subclass of BaseNode",
        "batch_size must be an integer >= 1",
        "workers must be an integer >= 1",
        "key is not set",
    ):
        assert expected in message
    assert len(caught.value.problems) == 9


async def test_uri_and_key_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="state_manager_uri is not set"):
        Runtime("ns", "rt", [Greet])
    monkeypatch.setenv("EXOSPHERE_STATE_MANAGER_URI", "http://localhost:8000")
    monkeypatch.setenv("EXOSPHERE_API_KEY", "secret")
    Runtime("ns", "rt", [Greet])


async def test_state_manager_version_is_accepted_as_an_alias() -> None:
    _runtime([Greet], state_manager_version="v0")
    _runtime([Greet], state_manage_version="v0")
    with pytest.raises(ConfigurationError, match="disagree"):
        _runtime([Greet], state_manage_version="v1", state_manager_version="v2")


async def test_registration_schema_lists_inputs_outputs_and_secret_names() -> None:
    entry = node_schema(WithSecrets, "ns")
    assert entry["name"] == "WithSecrets"
    assert entry["namespace"] == "ns"
    assert entry["secrets"] == ["token"]
    assert entry["outputs_schema"]["properties"] == {"token_length": {"title": "Token Length", "type": "string"}}
    assert node_schema(Greet, "ns")["inputs_schema"]["required"] == ["name"]


async def test_outputs_are_dumped_as_a_list() -> None:
    outcome = await run_node(Greet, {"name": "Ada", "extra": "ignored"}, {})
    assert outcome == Outcome("executed", {"outputs": [{"greeting": "Hello Ada!"}]})


async def test_a_list_of_outputs_is_a_fan_out_and_none_is_no_output() -> None:
    class Split(BaseNode):
        class Inputs(BaseModel):
            text: str

        class Outputs(BaseModel):
            word: str

        async def execute(self) -> list[Outputs] | None:
            words = self.inputs.text.split()
            return [self.Outputs(word=word) for word in words] or None

    assert (await run_node(Split, {"text": "a b"}, {})).body == {"outputs": [{"word": "a"}, {"word": "b"}]}
    assert (await run_node(Split, {"text": ""}, {})).body == {"outputs": []}


async def test_an_exception_is_reported_as_errored_with_its_type() -> None:
    class Boom(BaseNode):
        async def execute(self) -> None:
            raise Exception("This is a test error")

    outcome = await run_node(Boom, {}, {})
    assert outcome.endpoint == "errored" and outcome.body["error"] == "Exception: This is a test error"


async def test_an_exception_is_reported_with_its_traceback_and_causes() -> None:
    class Boom(BaseNode):
        async def execute(self) -> None:
            try:
                {}["missing"]
            except KeyError as exc:
                raise RuntimeError("lookup failed") from exc

    traceback = (await run_node(Boom, {}, {})).body["traceback"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert "KeyError: 'missing'" in traceback and "direct cause" in traceback
    assert 'raise RuntimeError("lookup failed") from exc' in traceback
    assert traceback.rstrip().endswith("RuntimeError: lookup failed")


async def test_a_huge_traceback_is_cut_to_its_end() -> None:
    try:
        raise ValueError("x" * 200_000)
    except ValueError as exc:
        traceback = describe_traceback(exc)
    assert len(traceback) < 70_000
    assert traceback.startswith("[... earlier frames cut]") and traceback.endswith("x\n")


async def test_invalid_inputs_are_reported_as_errored() -> None:
    outcome = await run_node(Greet, {}, {})
    assert outcome.endpoint == "errored"
    assert outcome.body["error"].startswith("ValidationError: ")
    assert "name" in outcome.body["error"]


async def test_invalid_secrets_never_echo_secret_values() -> None:
    class TwoSecrets(BaseNode):
        class Secrets(BaseModel):
            token: str
            other: str

        async def execute(self) -> None:
            return None

    outcome = await run_node(TwoSecrets, {}, {"token": 12345678, "unrelated": "hunter2"})
    assert outcome.endpoint == "errored"
    assert "12345678" not in outcome.body["error"] and "hunter2" not in outcome.body["error"]
    assert "other: Field required" in outcome.body["error"]


async def test_secrets_are_available_to_execute() -> None:
    outcome = await run_node(WithSecrets, {}, {"token": "abcd"})
    assert outcome.body == {"outputs": [{"token_length": "4"}]}


async def test_a_plain_def_runs_in_a_thread_without_stalling_the_loop() -> None:
    class Blocking(BaseNode):
        class Outputs(BaseModel):
            thread: str

        def execute(self) -> Outputs:  # type: ignore[override]
            time.sleep(0.3)
            return self.Outputs(thread=threading.current_thread().name)

    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    counting = asyncio.create_task(ticker())
    outcome = await run_node(Blocking, {}, {})
    counting.cancel()
    assert outcome.body["outputs"][0]["thread"] != threading.current_thread().name
    assert ticks >= 10


async def test_exceeding_the_timeout_reports_errored_saying_it_timed_out() -> None:
    class Slow(BaseNode):
        timeout = 0.05

        async def execute(self) -> None:
            await asyncio.sleep(5)

    outcome = await run_node(Slow, {}, {})
    assert outcome.endpoint == "errored" and outcome.body["error"] == "TimeoutError: Slow timed out after 0.05 s"


async def test_a_timeout_error_of_the_node_itself_is_not_called_a_timeout_of_ours() -> None:
    class OwnTimeout(BaseNode):
        async def execute(self) -> None:
            raise TimeoutError("upstream API")

    assert (await run_node(OwnTimeout, {}, {})).body["error"] == "TimeoutError: upstream API"


async def test_signals_become_prune_and_requeue_outcomes() -> None:
    class Prune(BaseNode):
        async def execute(self) -> None:
            raise PruneSignal({"reason": "empty"})

    class Later(BaseNode):
        async def execute(self) -> None:
            raise ReQueueAfterSignal(timedelta(seconds=2))

    assert await run_node(Prune, {}, {}) == Outcome("prune", {"data": {"reason": "empty"}})
    assert await run_node(Later, {}, {}) == Outcome("re-enqueue-after", {"enqueue_after": 2000})


async def test_returning_something_else_than_outputs_fails_the_state() -> None:
    class Wrong(BaseNode):
        async def execute(self) -> str:  # type: ignore[override]
            return "oops"

    outcome = await run_node(Wrong, {}, {})
    assert outcome.endpoint == "errored"
    assert outcome.body["error"].startswith("TypeError: Wrong.execute must return Wrong.Outputs")


async def test_timeout_must_be_positive() -> None:
    class BadTimeout(Greet):
        timeout = -1

    assert check_node_classes([BadTimeout]) == [
        "BadTimeout.timeout must be a positive number of seconds or None, got -1"
    ]


class Paths(BaseNode):
    class Outputs(BaseModel):
        path: str

    async def execute(self) -> list[Outputs]:
        return [self.Outputs(path="fine"), self.Outputs(path="a\x00b")]


class PruneWithNaN(BaseNode):
    async def execute(self) -> None:
        raise PruneSignal({"stats": [{"ratio": float("nan")}]})


async def test_an_output_the_server_cannot_store_fails_the_state_naming_the_output_and_field() -> None:
    outcome = await run_node(Paths, {}, {})
    assert outcome.endpoint == "errored"
    assert outcome.body["error"] == (
        "UnsendableOutputError: Output field 'path' of node Paths (output 1 of 2) contains a NUL character (\\x00) "
        "at position 1, which the state manager cannot store: 'a\\x00b'"
    )


async def test_prune_data_that_is_not_json_fails_the_state_naming_where() -> None:
    outcome = await run_node(PruneWithNaN, {}, {})
    assert outcome.endpoint == "errored"
    assert outcome.body["error"] == (
        "UnsendableOutputError: Prune data field 'stats[0].ratio' of node PruneWithNaN is not a finite number (nan)"
    )


async def test_an_error_text_with_lone_surrogates_or_nul_is_escaped_so_it_can_be_sent() -> None:
    outcome = Outcome.failed(OSError("cannot open '/data/abc\udcff'\x00"))
    assert outcome.body["error"] == "OSError: cannot open '/data/abc\\udcff'\\x00"
    outcome.body["error"].encode("utf-8")  # would raise on a lone surrogate
    outcome.body["traceback"].encode("utf-8")


class Metered(BaseNode):
    class Inputs(BaseModel):
        then: str

    class Outputs(BaseModel):
        done: str

    async def execute(self) -> Outputs:
        self.report_usage(input_tokens=100, requests=1)
        self.report_usage(output_tokens=7, requests=1, cost_usd=0.25)
        if self.inputs.then == "fail":
            raise RuntimeError("provider error")
        if self.inputs.then == "requeue":
            raise ReQueueAfterSignal(timedelta(seconds=1))
        return self.Outputs(done="yes")


async def test_reported_usage_adds_up_and_goes_with_the_result_or_the_error() -> None:
    usage = {"input_tokens": 100, "output_tokens": 7, "requests": 2, "cost_usd": 0.25}
    executed = await run_node(Metered, {"then": "succeed"}, {})
    assert executed == Outcome("executed", {"outputs": [{"done": "yes"}], "usage": usage})
    errored = await run_node(Metered, {"then": "fail"}, {})
    assert errored.endpoint == "errored" and errored.body["usage"] == usage
    requeued = await run_node(Metered, {"then": "requeue"}, {})
    assert "usage" not in requeued.body  # re-enqueue-after takes no usage


async def test_a_node_that_reports_nothing_sends_no_usage() -> None:
    outcome = await run_node(Greet, {"name": "Ada"}, {})
    assert "usage" not in outcome.body


@pytest.mark.parametrize(
    ("report", "message"),
    [
        ({"input_tokens": -1}, "input_tokens must be a non-negative integer"),
        ({"output_tokens": 1.5}, "output_tokens must be a non-negative integer"),
        ({"requests": True}, "requests must be a non-negative integer"),
        ({"cost_usd": float("nan")}, "cost_usd must be a finite number"),
        ({"input_tokens": 10**12 + 1}, "input_tokens of one attempt may not pass"),
    ],
)
async def test_bad_usage_reports_fail_the_attempt_saying_why(report: dict[str, object], message: str) -> None:
    class BadReport(BaseNode):
        async def execute(self) -> None:
            self.report_usage(**report)  # type: ignore[arg-type]

    outcome = await run_node(BadReport, {}, {})
    assert outcome.endpoint == "errored"
    assert message in outcome.body["error"]
