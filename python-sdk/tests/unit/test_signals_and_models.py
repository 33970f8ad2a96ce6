"""Signals and the wire shape of the models."""

from __future__ import annotations

from datetime import timedelta

import pytest
from exospherehost import (
    CronTrigger,
    GraphNodeModel,
    PruneSignal,
    ReQueueAfterSignal,
    RetryPolicyModel,
    RetryStrategyEnum,
    StoreConfigModel,
    UnitesModel,
    UnitesStrategyEnum,
)


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
