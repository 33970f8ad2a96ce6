"""Request bodies of the `v0` API (PROTOCOL §4) plus the additive fields of docs/wire-extensions.md.

Graph node, retry policy and store models come from the SDK (`exospherehost.models`): one
definition for both sides of the wire.
"""

from __future__ import annotations

from typing import Any, Literal

from exospherehost.models import GraphNodeModel, RetryPolicyModel, StoreConfigModel
from pydantic import BaseModel, Field, field_validator

from exosphere_server.engine.cron import validate_expression

MAX_WAIT_MS = 60_000


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


class UpsertGraphRequest(BaseModel):
    secrets: dict[str, str]
    nodes: list[GraphNodeModel]
    retry_policy: RetryPolicyModel = Field(default_factory=RetryPolicyModel)
    store_config: StoreConfigModel = Field(default_factory=StoreConfigModel)
    triggers: list[TriggerModel] = Field(default_factory=list)


class TriggerRequest(BaseModel):
    inputs: dict[str, str] = Field(default_factory=dict)
    store: dict[str, str] = Field(default_factory=dict)
    start_delay: int = Field(default=0, ge=0, description="Milliseconds before the root state may run")


class EnqueueRequest(BaseModel):
    nodes: list[str]
    batch_size: int = Field(ge=1, le=1000)
    wait_ms: int = Field(default=0, ge=0, le=MAX_WAIT_MS, description="Long-poll bound in milliseconds")
    lease_ms: int | None = Field(default=None, ge=1000, le=86_400_000, description="Lease of each claim")


class ExecutedRequest(BaseModel):
    outputs: list[dict[str, str]]
    lease_id: str | None = None


class ErroredRequest(BaseModel):
    error: str
    lease_id: str | None = None


class PruneRequest(BaseModel):
    data: dict[str, Any]
    lease_id: str | None = None


class ReEnqueueAfterRequest(BaseModel):
    enqueue_after: int = Field(gt=0, description="Relative delay in milliseconds")
    lease_id: str | None = None


class ManualRetryRequest(BaseModel):
    fanout_id: str = Field(min_length=1)


class HeartbeatRequest(BaseModel):
    lease_id: str
    lease_ms: int | None = Field(default=None, ge=1000, le=86_400_000)


class ReleaseRequest(BaseModel):
    lease_id: str


class NodeRegistration(BaseModel):
    name: str = Field(min_length=1)
    inputs_schema: dict[str, Any]
    outputs_schema: dict[str, Any]
    secrets: list[str]


class RegisterNodesRequest(BaseModel):
    runtime_name: str
    nodes: list[NodeRegistration]
