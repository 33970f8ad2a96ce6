"""Every exception the SDK raises, in one hierarchy.

``ExosphereError`` is the root. Errors that come from the state manager's answers are ``ApiError``s
and carry the HTTP status and the server's own message (``detail``)::

    from exospherehost import StateManager
    from exospherehost.errors import NotFoundError

    try:
        await StateManager("demo").get_graph("missing")
    except NotFoundError as exc:
        print(exc.status_code, exc.detail)  # 404 Graph template missing not found in namespace demo
"""

from __future__ import annotations

from typing import Any


class ExosphereError(Exception):
    """Base class of every error raised by the SDK."""


class ConfigurationError(ExosphereError, ValueError):
    """The SDK was configured wrongly (bad node classes, missing URI or key, bad numbers).

    It lists every problem found, one per line, so all of them can be fixed at once.
    """

    def __init__(self, problems: list[str], what: str = "configuration") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"Invalid {what} ({len(self.problems)} problem(s)):\n{lines}")


class UnsendableOutputError(ExosphereError, ValueError):
    """A node's outputs (or its prune data) cannot be sent to the state manager.

    Raised for text that is not valid Unicode (a lone surrogate such as ``"\\udcff"``, which
    ``os.listdir`` returns for file names that are not UTF-8), text with NUL characters, non-finite
    numbers and values that are not JSON. The runtime reports the state as errored with this
    message, which names the node and the field, so the graph's retry policy applies.
    """


class ApiError(ExosphereError, RuntimeError):
    """The state manager answered with an error, or could not be reached.

    ``status_code`` is the HTTP status (``None`` when no answer arrived) and ``detail`` the
    server's message (its ``detail`` field when the body has one).
    """

    def __init__(self, status_code: int | None, detail: Any, action: str = "") -> None:
        self.status_code = status_code
        self.detail = detail
        self.action = action
        status = f"{status_code} " if status_code is not None else ""
        prefix = f"{action} failed: " if action else ""
        super().__init__(f"{prefix}{status}{detail}")

    # An answer arrived, so the request was sent; only connection failures may say otherwise.
    request_sent: bool = True

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later (timeouts, throttling, server errors)."""
        return self.status_code is None or self.status_code in (408, 429) or self.status_code >= 500


class ServerUnavailableError(ApiError):
    """The state manager could not be reached, or answered 502/503/504 (it may be restarting).

    ``request_sent`` is false when the connection failed before the request left, so even a
    non-idempotent request (such as a trigger) can safely be sent again. ``timed_out`` is true when
    no answer came within the client's timeout (connecting or reading).
    """

    timed_out: bool = False


class AuthenticationError(ApiError):
    """The API key was refused (401). Check ``EXOSPHERE_API_KEY`` against the server's secret."""


class PermissionDeniedError(ApiError):
    """The API key is valid but its role or namespace does not allow this call (403); the message names
    the role the call needs."""


class NotFoundError(ApiError):
    """The graph, run or state does not exist in this namespace (404)."""


class ConflictError(ApiError):
    """The request conflicts with the current state on the server (409)."""


class LeaseLostError(ConflictError):
    """The state is no longer held under this runtime's lease (it expired, or was completed or re-claimed).

    The result of that state is discarded: the server already moved it on.
    """


class UnexpectedAnswerError(ApiError):
    """The state manager answered with success, but not in the shape of :mod:`exospherehost.contract`.

    Usually a server of another version, or something between the SDK and the server (a proxy's
    HTML page). ``detail`` says what did not fit. Repeating the request would not help.
    """

    @property
    def retryable(self) -> bool:
        return False


class GraphValidationError(ExosphereError):
    """A graph template was rejected, or its validation did not finish in time.

    ``status`` is the final validation status (``INVALID``, or ``PENDING`` on timeout) and ``errors``
    the server's list of messages.
    """

    def __init__(self, graph_name: str, status: str, errors: list[str]) -> None:
        self.graph_name = graph_name
        self.status = status
        self.errors = list(errors)
        super().__init__(f"Graph validation failed for {graph_name!r}: {status} and errors: {self.errors}")


class RunTimeoutError(ExosphereError, TimeoutError):
    """A run did not finish within the time given to ``StateManager.wait_for_run``.

    ``run`` is the last run summary seen (``None`` if none was read).
    """

    def __init__(self, run_id: str, timeout: float, run: dict[str, Any] | None) -> None:
        self.run_id = run_id
        self.timeout = timeout
        self.run = run
        status = run.get("status") if run else "unknown"
        super().__init__(f"Run {run_id} did not finish within {timeout:g} s (status: {status})")


def error_for_status(status_code: int, detail: Any, action: str = "") -> ApiError:
    """The most specific :class:`ApiError` for an error answer: the one table of status codes."""
    if status_code == 401:
        return AuthenticationError(status_code, detail, action)
    if status_code == 403:
        return PermissionDeniedError(status_code, detail, action)
    if status_code == 404:
        return NotFoundError(status_code, detail, action)
    if status_code == 409:
        if isinstance(detail, str) and detail.lower().startswith("lease lost"):
            return LeaseLostError(status_code, detail, action)
        return ConflictError(status_code, detail, action)
    if status_code in (502, 503, 504):
        return ServerUnavailableError(status_code, detail, action)
    return ApiError(status_code, detail, action)


__all__ = [
    "ApiError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "ExosphereError",
    "GraphValidationError",
    "LeaseLostError",
    "NotFoundError",
    "PermissionDeniedError",
    "RunTimeoutError",
    "ServerUnavailableError",
    "UnexpectedAnswerError",
    "UnsendableOutputError",
]
