"""The graph models of the ``v0`` wire protocol, and the events of a run's stream.

These classes are the single source of truth for the graph template fields:
the SDK sends them and the Exosphere server validates upserts with them.

Example::

    from exospherehost import GraphNodeModel, UnitesModel

    nodes = [
        GraphNodeModel(node_name="Split", namespace="demo", identifier="split",
                       inputs={"text": "${{ store.text }}"}, next_nodes=["count"]),
        GraphNodeModel(node_name="Count", namespace="demo", identifier="count",
                       inputs={"chunk": "${{ split.outputs.chunk }}"}, next_nodes=["sum"]),
        GraphNodeModel(node_name="Sum", namespace="demo", identifier="sum",
                       unites=UnitesModel(identifier="split")),
    ]
"""

from __future__ import annotations

from collections import Counter
from enum import Enum
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from .statuses import StateStatus

# The same class under its original name: statuses, their groups and moves live in `statuses.py`.
StateStatusEnum = StateStatus


MAX_TIMEOUT_SECONDS = 100 * 365 * 86_400.0
"""The largest time-out or deadline a graph, node or trigger may carry (a hundred years)."""


class GraphValidationStatusEnum(str, Enum):
    """Validation status of a graph template."""

    VALID = "VALID"
    INVALID = "INVALID"
    PENDING = "PENDING"
    ONGOING = "ONGOING"


class UnitesStrategyEnum(str, Enum):
    """When a ``unites`` node fires: after every descendant succeeded, or after all are done."""

    ALL_SUCCESS = "ALL_SUCCESS"
    ALL_DONE = "ALL_DONE"


class RetryStrategyEnum(str, Enum):
    """How the delay before an automatic retry grows with the attempt number."""

    EXPONENTIAL = "EXPONENTIAL"
    EXPONENTIAL_FULL_JITTER = "EXPONENTIAL_FULL_JITTER"
    EXPONENTIAL_EQUAL_JITTER = "EXPONENTIAL_EQUAL_JITTER"
    LINEAR = "LINEAR"
    LINEAR_FULL_JITTER = "LINEAR_FULL_JITTER"
    LINEAR_EQUAL_JITTER = "LINEAR_EQUAL_JITTER"
    FIXED = "FIXED"
    FIXED_FULL_JITTER = "FIXED_FULL_JITTER"
    FIXED_EQUAL_JITTER = "FIXED_EQUAL_JITTER"


def _non_empty(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"{what} cannot be empty")
    return value


class UnitesModel(BaseModel):
    """Makes a node wait for every descendant of one state of ``identifier``.

    Example::

        UnitesModel(identifier="split", strategy=UnitesStrategyEnum.ALL_DONE)
    """

    identifier: str = Field(..., description="Identifier of the node whose descendants are awaited")
    strategy: UnitesStrategyEnum = Field(default=UnitesStrategyEnum.ALL_SUCCESS)

    @field_validator("identifier")
    @classmethod
    def _check_identifier(cls, value: str) -> str:
        return _non_empty(value, "Unites identifier")


LIMIT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
"""What a limit's name may be: letters, digits and ``_ . : -``, 128 characters at most."""


class NodeLimitModel(BaseModel):
    """A named limit of the namespace that a graph node's states are charged to when claimed.

    Example::

        NodeLimitModel(name="openai", tokens="${{ plan.outputs.estimate }}", key="${{ store.customer }}")
    """

    name: str = Field(..., pattern=LIMIT_NAME_PATTERN, description="The limit (PUT /v0/namespace/{ns}/limits/{name})")
    tokens: str = Field(
        default="0",
        description="Tokens charged at claim (the estimate): an integer, or a ${{ }} placeholder that gives one",
    )
    key: str | None = Field(
        default=None,
        description="Splits the limit into one bucket per value (e.g. per customer): usually a ${{ }} placeholder",
    )


class GraphNodeModel(BaseModel):
    """One node of a graph template.

    Example::

        GraphNodeModel(node_name="Greet", namespace="demo", identifier="greet",
                       inputs={"name": "${{ store.name }}"}, next_nodes=[])
        # A child graph: its run starts when this node is reached; its final outputs are this node's.
        GraphNodeModel(graph_name="summarise", namespace="demo", identifier="summary",
                       inputs={"text": "${{ greet.outputs.text }}"})
    """

    node_name: str = Field(
        ...,
        description="Class name of the registered node to run; for a node that names a graph (`graph_name`), "
        "a label that defaults to the graph's name",
    )
    namespace: str = Field(..., description="Namespace where the node is registered")
    identifier: str = Field(..., description="Unique name of this node inside the graph")
    inputs: dict[str, str] = Field(default_factory=dict, description="Input values; may hold ${{ ... }} placeholders")
    next_nodes: list[str] | None = Field(default=None, description="Identifiers of the nodes that follow")
    unites: UnitesModel | None = Field(default=None, description="Wait for all descendants of another node")
    timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TIMEOUT_SECONDS,
        description="Additive: seconds from claim to result before an attempt fails with 'Timed out after N s' "
        "(and goes through the retry policy); default: the graph's timeout_seconds, else none",
    )
    limits: list[NodeLimitModel] = Field(
        default_factory=list,
        description="Additive: named limits its states are charged to; a claim hands out only states whose "
        "limits have room",
    )
    concurrency: int | None = Field(
        default=None, ge=1, description="Additive: at most this many of its states claimed at once, everywhere"
    )
    graph_name: str | None = Field(
        default=None,
        description="Additive: run this graph of the same namespace as a child run instead of a node class. "
        "`inputs` are the inputs of its first node; the node's outputs are the child run's final outputs "
        "(each field a JSON list when several states end it)",
    )

    @model_validator(mode="before")
    @classmethod
    def _label_child_graph(cls, data: Any) -> Any:
        """A node that names a graph needs no node class: its `node_name` defaults to the graph's name,
        so every reader of a graph, the published 0.0.3 client too, still finds a `node_name`."""
        if isinstance(data, dict) and data.get("graph_name") and not data.get("node_name"):
            return {**data, "node_name": data["graph_name"]}
        return data

    @field_validator("graph_name")
    @classmethod
    def _check_graph_name(cls, value: str | None) -> str | None:
        return None if value is None else _non_empty(value, "Graph name")

    @field_validator("node_name")
    @classmethod
    def _check_node_name(cls, value: str) -> str:
        return _non_empty(value, "Node name")

    @field_validator("identifier")
    @classmethod
    def _check_identifier(cls, value: str) -> str:
        value = _non_empty(value, "Node identifier")
        if value == "store":
            raise ValueError("Node identifier cannot be reserved word 'store'")
        return value

    @field_validator("next_nodes")
    @classmethod
    def _check_next_nodes(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        cleaned = [_non_empty(item, "Next node identifier") for item in value]
        # Counted once each: `cleaned.count` per item was quadratic in a wide fan-out's next_nodes.
        duplicates = sorted(item for item, count in Counter(cleaned).items() if count > 1)
        if duplicates:
            raise ValueError(f"Next node identifiers are not unique: {', '.join(duplicates)}")
        return cleaned


class RetryPolicyModel(BaseModel):
    """Automatic retries of failed states, for every node of a graph. Delays are in milliseconds.

    Example::

        RetryPolicyModel(max_retries=5, strategy=RetryStrategyEnum.LINEAR, backoff_factor=500)
    """

    max_retries: int = Field(default=3, ge=0, description="Retries after the first attempt")
    strategy: RetryStrategyEnum = Field(default=RetryStrategyEnum.EXPONENTIAL)
    backoff_factor: int = Field(default=2000, gt=0, description="Base delay in milliseconds")
    exponent: int = Field(default=2, gt=0)
    max_delay: int | None = Field(default=None, gt=0, description="Upper bound of a delay in milliseconds")


class StoreConfigModel(BaseModel):
    """The per-run key/value store of a graph: keys a trigger must give, and defaults.

    Example::

        StoreConfigModel(required_keys=["cursor"], default_values={"batch_size": "100"})
    """

    required_keys: list[str] = Field(default_factory=list)
    default_values: dict[str, str] = Field(default_factory=dict)

    @field_validator("required_keys")
    @classmethod
    def _check_required_keys(cls, value: list[str]) -> list[str]:
        return _check_store_keys(value)

    @field_validator("default_values")
    @classmethod
    def _check_default_values(cls, value: dict[str, str]) -> dict[str, str]:
        keys = _check_store_keys(list(value))
        return dict(zip(keys, value.values(), strict=True))


def _check_store_keys(keys: list[str]) -> list[str]:
    cleaned: list[str] = []
    errors: list[str] = []
    for key in keys:
        stripped = key.strip()
        if not stripped:
            errors.append("Key cannot be empty")
        elif "." in stripped:
            errors.append(f"Key '{stripped}' cannot contain '.'")
        elif stripped in cleaned:
            errors.append(f"Key '{stripped}' is duplicated")
        cleaned.append(stripped)
    if errors:
        raise ValueError("; ".join(errors))
    return cleaned


class CronTrigger(BaseModel):
    """Runs a graph on a cron schedule, evaluated in UTC; each run starts with ``inputs`` and ``store``
    as a trigger's would (a graph with required store keys needs them here).

    Example::

        CronTrigger(expression="0 9 * * 1-5")  # every weekday at 09:00 UTC
        CronTrigger(expression="*/15 * * * *", store={"cursor": "0"})
    """

    expression: str = Field(..., description="Standard 5-field cron expression (UTC)")
    inputs: dict[str, str] = Field(default_factory=dict, description="Override the first node's template inputs")
    store: dict[str, str] = Field(default_factory=dict, description="The key/value store each run starts with")


class TriggerState(BaseModel):
    """Inputs for the first node of a run.

    Example::

        TriggerState(identifier="user-login", inputs={"user_id": "12345"})
    """

    identifier: str
    inputs: dict[str, str] = Field(default_factory=dict)
