"""Domain errors raised by the engine; the API maps each class to one status code (api/errors.py)."""

from __future__ import annotations


class EngineError(Exception):
    """Base class; `str(error)` is the message a client sees."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(EngineError):
    """The object does not exist in this namespace (404)."""


class BadRequest(EngineError):
    """The request is well-formed but cannot be applied as asked (400)."""


class Conflict(EngineError):
    """The request collides with the current state of an object (409)."""


class LeaseLost(Conflict):
    """A runtime reports on a state it no longer holds: the lease expired or the state was claimed again."""


class StateCancelled(LeaseLost):
    """A runtime reports on (or heartbeats) a state whose run was cancelled: stop, nothing is applied."""


class GraphInvalid(BadRequest):
    """A graph template breaks structural rules; `errors` lists every problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("Error validating graph template: " + "; ".join(errors))
        self.errors = errors


class GraphTooLarge(EngineError):
    """A graph template has more nodes than this server accepts (422)."""

    def __init__(self, node_count: int, limit: int) -> None:
        super().__init__(
            f"The graph has {node_count} nodes but this server accepts at most {limit} nodes per graph; "
            "raise the limit with the EXOSPHERE_MAX_GRAPH_NODES setting of the state manager"
        )
