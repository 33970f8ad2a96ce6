"""Signals and the wire shape of the models."""

from __future__ import annotations

from datetime import timedelta

import pytest
from exospherehost import (
    BaseNode,
    CronTrigger,
    GraphNodeModel,
    PruneSignal,
    ReQueueAfterSignal,
    RetryPolicyModel,
    RetryStrategyEnum,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
    WaitForSignal,
)
from exospherehost.node import Outcome, run_node
from pydantic import BaseModel


def test_prune_signal_data_defaults_to_an_empty_dict() -> None:
    assert PruneSignal().data == {}
    assert PruneSignal({"k": "v"}).data == {"k": "v"}


@pytest.mark.parametrize("delay", [timedelta(0), timedelta(seconds=-1)])
def test_requeue_delay_must_be_positive(delay: timedelta) -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        ReQueueAfterSignal(delay)


@pytest.mark.parametrize(
    ("delay", "expected_ms"),
    [
        (timedelta(microseconds=1), 1),
        (timedelta(microseconds=1500), 2),
        (timedelta(milliseconds=1100), 1100),
        (timedelta(seconds=1), 1000),
        (timedelta(minutes=5), 300_000),
    ],
)
def test_requeue_delay_is_sent_in_whole_milliseconds_never_zero(delay: timedelta, expected_ms: int) -> None:
    assert ReQueueAfterSignal(delay).delay_ms == expected_ms


def test_graph_node_dump_sends_every_field_with_enums_as_strings() -> None:
    node = GraphNodeModel(
        node_name=" Sum ",
        namespace="demo",
        identifier="sum",
        unites=UnitesModel(identifier="split", strategy=UnitesStrategyEnum.ALL_DONE),
    )
    assert node.model_dump(mode="json") == {
        "node_name": "Sum",
        "namespace": "demo",
        "identifier": "sum",
        "inputs": {},
        "next_nodes": None,
        "unites": {"identifier": "split", "strategy": "ALL_DONE"},
        "timeout_seconds": None,
        "limits": [],
        "concurrency": None,
        "graph_name": None,
    }


def test_retry_policy_and_store_config_dump() -> None:
    policy = RetryPolicyModel(max_retries=3, strategy=RetryStrategyEnum.EXPONENTIAL, backoff_factor=2000, exponent=2)
    assert policy.model_dump(mode="json") == {
        "max_retries": 3,
        "strategy": "EXPONENTIAL",
        "backoff_factor": 2000,
        "exponent": 2,
        "max_delay": None,
    }
    store = StoreConfigModel(required_keys=["cursor"], default_values={"batch_size": "100"})
    assert store.model_dump() == {"required_keys": ["cursor"], "default_values": {"batch_size": "100"}}
    assert CronTrigger(expression="0 9 * * 1-5").expression == "0 9 * * 1-5"


@pytest.mark.parametrize(
    ("name", "timeout", "problem"),
    [
        ("no spaces", None, "Signal name"),
        ("", None, "Signal name"),
        ("x" * 129, None, "Signal name"),
        ("approval", 0, "timeout_seconds"),
        ("approval", True, "timeout_seconds"),
        ("approval", float("nan"), "timeout_seconds"),
    ],
)
def test_wait_for_signal_refuses_what_the_server_would_refuse(name: str, timeout: float | None, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        WaitForSignal(name, timeout_seconds=timeout)


async def test_a_node_that_waits_is_reported_as_a_wait_and_runs_again_with_the_payload() -> None:
    class Approve(BaseNode):
        class Outputs(BaseModel):
            approved: str

        async def execute(self) -> Outputs:
            if self.signal is None:
                raise WaitForSignal("approval", timeout_seconds=90)
            return self.Outputs(approved=self.signal["approved"])

    first = await run_node(Approve, {}, {})
    assert first == Outcome("wait-for-signal", {"name": "approval", "timeout_seconds": 90.0})
    again = await run_node(Approve, {}, {}, {"approved": "yes"})
    assert again == Outcome("executed", {"outputs": [{"approved": "yes"}]})
