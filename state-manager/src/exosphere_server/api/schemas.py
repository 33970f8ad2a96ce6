"""Request bodies as the server validates them: the contract's models plus the checks only the server makes.

The fields live in `exospherehost.contract` (one definition for the server, both SDKs and
`/openapi.json`). Each class here adds what the SDK cannot check: that everything in the body can be
stored on every backend (`unstorable_at`), and for graphs that each cron expression fires (croniter).
The classes keep the contract's names and descriptions, so the OpenAPI document shows the contract.
"""

from __future__ import annotations

from typing import Any

from exospherehost import contract
from exospherehost.contract import MAX_WAIT_MS, GraphTrigger
from pydantic import BaseModel, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import InitErrorDetails

from exosphere_server.engine.cron import validate_expression
from exosphere_server.engine.storable import unstorable_at

__all__ = [
    "MAX_WAIT_MS",
    "CancelRunRequest",
    "CreateKeyRequest",
    "EnqueueRequest",
    "ErroredRequest",
    "ExecutedManyRequest",
    "ExecutedRequest",
    "HeartbeatRequest",
    "ManualRetryRequest",
    "PruneRequest",
    "RateLimitedRequest",
    "ReEnqueueAfterRequest",
    "RegisterNodesRequest",
    "ReleaseRequest",
    "SendSignalRequest",
    "TriggerManyRequest",
    "TriggerRequest",
    "UpsertGraphRequest",
    "WaitForSignalRequest",
]


# Validation context of a body whose raw JSON `raw_json_surely_storable` has cleared: no walk needed.
RAW_CHECKED = {"raw_checked": True}


class StorableBody(BaseModel):
    """A request body: everything in it must be storable on every backend (see `unstorable_at`)."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is RAW_CHECKED:
            return data
        problem = unstorable_at(data)
        if problem is not None:
            raise ValueError(problem)
        return data


class UpsertGraphRequest(StorableBody, contract.UpsertGraphRequest):
    __doc__ = contract.UpsertGraphRequest.__doc__

    @field_validator("triggers")
    @classmethod
    def _cron_fires(cls, triggers: list[GraphTrigger]) -> list[GraphTrigger]:
        # Raised as a ValidationError so that each problem keeps its place (`triggers.0.value.expression`).
        problems = [
            InitErrorDetails(
                type="value_error",
                loc=(index, "value", "expression"),
                input=trigger.value.expression,
                ctx={"error": problem},
            )
            for index, trigger in enumerate(triggers)
            if (problem := validate_expression(trigger.value.expression)) is not None
        ]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return triggers


class CreateKeyRequest(StorableBody, contract.CreateKeyRequest):
    __doc__ = contract.CreateKeyRequest.__doc__


class TriggerRequest(StorableBody, contract.TriggerRequest):
    __doc__ = contract.TriggerRequest.__doc__


class TriggerManyRequest(StorableBody, contract.TriggerManyRequest):
    __doc__ = contract.TriggerManyRequest.__doc__


class CancelRunRequest(StorableBody, contract.CancelRunRequest):
    __doc__ = contract.CancelRunRequest.__doc__


class EnqueueRequest(StorableBody, contract.EnqueueRequest):
    __doc__ = contract.EnqueueRequest.__doc__


class ExecutedRequest(StorableBody, contract.ExecutedRequest):
    __doc__ = contract.ExecutedRequest.__doc__


class ExecutedManyRequest(StorableBody, contract.ExecutedManyRequest):
    __doc__ = contract.ExecutedManyRequest.__doc__


class ErroredRequest(StorableBody, contract.ErroredRequest):
    __doc__ = contract.ErroredRequest.__doc__


class PruneRequest(StorableBody, contract.PruneRequest):
    __doc__ = contract.PruneRequest.__doc__


class ReEnqueueAfterRequest(StorableBody, contract.ReEnqueueAfterRequest):
    __doc__ = contract.ReEnqueueAfterRequest.__doc__


class RateLimitedRequest(StorableBody, contract.RateLimitedRequest):
    __doc__ = contract.RateLimitedRequest.__doc__


class ManualRetryRequest(StorableBody, contract.ManualRetryRequest):
    __doc__ = contract.ManualRetryRequest.__doc__


class HeartbeatRequest(StorableBody, contract.HeartbeatRequest):
    __doc__ = contract.HeartbeatRequest.__doc__


class ReleaseRequest(StorableBody, contract.ReleaseRequest):
    __doc__ = contract.ReleaseRequest.__doc__


class RegisterNodesRequest(StorableBody, contract.RegisterNodesRequest):
    __doc__ = contract.RegisterNodesRequest.__doc__


class WaitForSignalRequest(StorableBody, contract.WaitForSignalRequest):
    __doc__ = contract.WaitForSignalRequest.__doc__


class SendSignalRequest(contract.SendSignalRequest):
    __doc__ = contract.SendSignalRequest.__doc__

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        problem = unstorable_at(data)
        if problem is not None:
            raise ValueError(problem)
        return data
