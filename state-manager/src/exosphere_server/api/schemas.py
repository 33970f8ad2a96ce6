"""Request bodies of the `v0` API (PROTOCOL §4) plus the additive fields of docs/wire-extensions.md.

Graph node, retry policy and store models come from the SDK (`exospherehost.models`): one
definition for both sides of the wire.
"""

from __future__ import annotations

from typing import Any, Literal

from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel
from pydantic import BaseModel, Field, field_validator, model_validator

from exosphere_server.engine.cron import validate_expression
from exosphere_server.engine.storable import unstorable_at

MAX_WAIT_MS = 60_000
# Delays beyond a century are refused (422): unbounded ones overflowed the epoch-ms columns into a 500 (D21).
MAX_DELAY_MS = 100 * 365 * 86_400_000


class WireModel(BaseModel):
    """A request body: everything in it must be storable on every backend (see `unstorable_at`)."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = unstorable_at(data)
        if problem is not None:
            raise ValueError(problem)
        return data


class CronValue(BaseModel):
    expression: str
    # Additive: what a cron run starts with, so graphs with required store keys can be scheduled (D20).
    inputs: dict[str, str] = Field(default_factory=dict)
    store: dict[str, str] = Field(default_factory=dict)

    @field_validator("expression")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        problem = validate_expression(value)
        if problem is not None:
            raise ValueError(problem)
        return value


class TriggerModel(BaseModel):
    type: Literal["CRON"]
    value: CronValue


class UpsertGraphRequest(WireModel):
    secrets: dict[str, str]
    nodes: list[GraphNodeModel]
    retry_policy: RetryPolicyModel = Field(default_factory=RetryPolicyModel)
    store_config: StoreConfigModel = Field(default_factory=StoreConfigModel)
    triggers: list[TriggerModel] = Field(default_factory=list)


class TriggerRequest(WireModel):
    inputs: dict[str, str] = Field(default_factory=dict)
    store: dict[str, str] = Field(default_factory=dict)
    start_delay: int = Field(default=0, ge=0, le=MAX_DELAY_MS, description="Milliseconds before the root state may run")


class EnqueueRequest(WireModel):
    nodes: list[str]
    batch_size: int = Field(ge=1, le=1000)
    wait_ms: int = Field(default=0, ge=0, le=MAX_WAIT_MS, description="Long-poll bound in milliseconds")
    lease_ms: int | None = Field(default=None, ge=1000, le=86_400_000, description="Lease of each claim")


class ExecutedRequest(WireModel):
    outputs: list[dict[str, str]]
    lease_id: str | None = None


class ExecutedItem(WireModel):
    state_id: str
    outputs: list[dict[str, str]]
    lease_id: str | None = None


class ExecutedManyRequest(WireModel):
    """Additive: several results in one call (a runtime with many finished states at once)."""

    results: list[ExecutedItem] = Field(min_length=1, max_length=500)


class ErroredRequest(WireModel):
    error: str
    lease_id: str | None = None


class PruneRequest(WireModel):
    data: dict[str, Any]
    lease_id: str | None = None


class ReEnqueueAfterRequest(WireModel):
    enqueue_after: int = Field(gt=0, le=MAX_DELAY_MS, description="Relative delay in milliseconds")
    lease_id: str | None = None


class ManualRetryRequest(WireModel):
    fanout_id: str = Field(min_length=1)


class HeartbeatRequest(WireModel):
    lease_id: str
    lease_ms: int | None = Field(default=None, ge=1000, le=86_400_000)


class ReleaseRequest(WireModel):
    lease_id: str


class NodeRegistration(BaseModel):
    name: str = Field(min_length=1)
    inputs_schema: dict[str, Any]
    outputs_schema: dict[str, Any]
    secrets: list[str]


class RegisterNodesRequest(WireModel):
    runtime_name: str
    nodes: list[NodeRegistration]
