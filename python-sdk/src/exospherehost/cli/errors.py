"""How the CLI fails: exit codes, and the SDK's typed errors told as one line for a person.

Example::

    raise CliError("invalid --limit 0: must be between 1 and 1000", EXIT_USAGE)
    # main() prints `error: invalid --limit 0: ...` on stderr and exits 2
"""

from __future__ import annotations

from typing import Any

from exospherehost.errors import ApiError, AuthenticationError, ConfigurationError, ExosphereError

# Exit codes, documented in docs/cli.md.
EXIT_FAILED = 1  # the answer is "no": the run failed, the graph is invalid
EXIT_USAGE = 2  # the command line or a file is wrong, or a part is not installed
EXIT_REFUSED = 3  # the server is unreachable or refused the request (key, unknown run, conflict)
EXIT_TIMEOUT = 4  # gave up waiting (--timeout)


class CliError(Exception):
    """A problem reported as one line on stderr, then the process exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def describe_validation_errors(detail: Any) -> list[str]:
    """FastAPI's 422 `detail` as `field: problem` lines (`nodes[0].identifier: Field required`)."""
    if not isinstance(detail, list):
        return [str(detail)]
    lines = []
    for error in detail:
        loc = [part for part in error.get("loc", []) if part not in ("body", "query", "path")]
        lines.append(f"{field_path(loc) or 'request'}: {error.get('msg', 'invalid')}")
    return lines


def field_path(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def from_sdk_error(exc: ExosphereError, server: str, timeout: float) -> CliError:
    """The CLI's one line (and exit code) for an error the SDK raised talking to `server`."""
    if isinstance(exc, ConfigurationError):
        return CliError("; ".join(exc.problems), EXIT_USAGE)
    message = _api_message(exc, server, timeout) if isinstance(exc, ApiError) else str(exc)
    return CliError(" ".join(message.split()), EXIT_REFUSED)


def _api_message(exc: ApiError, server: str, timeout: float) -> str:
    status, detail = exc.status_code, exc.detail
    if status is None:  # no answer: the SDK's ServerUnavailableError
        # The SDK chains the network error it got; its text ("[Errno 111] Connection refused") is the reason.
        reason = exc.__cause__ or detail
        if getattr(exc, "timed_out", False):
            return f"the state manager at {server} did not answer within {timeout:g} s"
        if not exc.request_sent:
            return (
                f"cannot reach the state manager at {server} ({reason or 'connection failed'}): "
                "is `exosphere server` running? Set --server or EXOSPHERE_STATE_MANAGER_URI"
            )
        return f"request to the state manager at {server} failed: {reason}"
    if isinstance(exc, AuthenticationError):
        return f"the state manager at {server} refused the API key: pass --key or set EXOSPHERE_API_KEY"
    if status == 404 and detail in (None, "Not Found"):
        # FastAPI's answer for an unknown route: probably not an Exosphere server, or an older one.
        action = exc.action[:1].lower() + exc.action[1:] if exc.action else "this request"
        return f"{server} has no endpoint for {action}: is it an Exosphere state manager?"
    if status == 422:
        return "invalid request: " + "; ".join(describe_validation_errors(detail))
    if status >= 500:
        return f"the state manager failed (HTTP {status}): {detail or 'no detail'}"
    return str(detail) if detail else f"HTTP {status}"
