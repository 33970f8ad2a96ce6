"""Exosphere Python SDK: write nodes, serve them with a Runtime, manage graphs with a StateManager.

Example::

    from pydantic import BaseModel
    from exospherehost import BaseNode, Runtime

    class Greet(BaseNode):
        class Inputs(BaseModel):
            name: str

        class Outputs(BaseModel):
            greeting: str

        async def execute(self) -> Outputs:
            return self.Outputs(greeting=f"Hello {self.inputs.name}")

    Runtime(namespace="demo", name="greeter", nodes=[Greet]).start()
"""

from ._version import VERSION
from .contract import RunEvent, RunNodeCounts
from .errors import (
    ApiError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    ExosphereError,
    GraphValidationError,
    LeaseLostError,
    NotFoundError,
    PermissionDeniedError,
    RunTimeoutError,
    ServerUnavailableError,
    UnexpectedAnswerError,
    UnsendableOutputError,
)
from .models import (
    CronTrigger,
    GraphNodeModel,
    GraphValidationStatusEnum,
    NodeLimitModel,
    RetryPolicyModel,
    RetryStrategyEnum,
    StateStatusEnum,
    StoreConfigModel,
    TriggerState,
    UnitesModel,
    UnitesStrategyEnum,
)
from .node import BaseNode
from .rate_limits import retry_after_seconds
from .runtime import Runtime
from .signals import PruneSignal, RateLimitedSignal, ReQueueAfterSignal, WaitForSignal
from .state_manager import StateManager
from .statuses import RunStatus, StateStatus

__version__ = VERSION

__all__ = [
    "VERSION",
    "ApiError",
    "AuthenticationError",
    "BaseNode",
    "ConfigurationError",
    "ConflictError",
    "CronTrigger",
    "ExosphereError",
    "GraphNodeModel",
    "GraphValidationError",
    "GraphValidationStatusEnum",
    "LeaseLostError",
    "NodeLimitModel",
    "NotFoundError",
    "PermissionDeniedError",
    "PruneSignal",
    "RateLimitedSignal",
    "ReQueueAfterSignal",
    "RetryPolicyModel",
    "RetryStrategyEnum",
    "RunEvent",
    "RunNodeCounts",
    "RunStatus",
    "RunTimeoutError",
    "Runtime",
    "ServerUnavailableError",
    "StateManager",
    "StateStatus",
    "StateStatusEnum",
    "StoreConfigModel",
    "TriggerState",
    "UnexpectedAnswerError",
    "UnitesModel",
    "UnitesStrategyEnum",
    "UnsendableOutputError",
    "WaitForSignal",
    "__version__",
    "retry_after_seconds",
]
