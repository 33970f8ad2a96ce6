"""A small synchronous client of the state manager for the CLI: one namespace, every failure one line.

Example::

    with Client("http://127.0.0.1:8000", key="k", namespace="demo") as client:
        client.get("graphs/")            # GET /v0/namespace/demo/graphs/
"""

from __future__ import annotations

from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

# Exit codes, documented in docs/cli.md.
EXIT_FAILED = 1  # the answer is "no": the run failed, the graph is invalid
EXIT_USAGE = 2  # the command line or a file is wrong
EXIT_REFUSED = 3  # the server is unreachable or refused the request (key, unknown run, conflict)
EXIT_TIMEOUT = 4  # gave up waiting (--timeout)


class CliError(Exception):
    """A problem reported as one line on stderr, then the process exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class ApiError(CliError):
    """The server answered with an error; `detail` is its body's `detail` (a string or a list)."""

    def __init__(self, message: str, status: int, detail: Any) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


def segment(value: str) -> str:
    """One path segment, escaped (names may hold spaces or slashes)."""
    return quote(value, safe="")


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


class Client:
    def __init__(self, server: str, key: str | None, namespace: str, timeout: float = 30.0) -> None:
        server = server.strip().rstrip("/")
        if not server.startswith(("http://", "https://")):
            raise CliError(f"invalid server address {server!r}: use e.g. http://127.0.0.1:8000", EXIT_USAGE)
        if not namespace.strip():
            raise CliError("no namespace: pass --namespace or set EXOSPHERE_NAMESPACE", EXIT_USAGE)
        self.server = server
        self.namespace = namespace
        self.key = key
        self.timeout = timeout
        headers = {"x-api-key": key} if key else {}
        self._http = httpx.Client(base_url=f"{server}/v0/namespace/{segment(namespace)}/", headers=headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self._http.request(method, path, json=json, params=params, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise CliError(f"the state manager at {self.server} did not answer within {self.timeout:g} s") from exc
        except httpx.ConnectError as exc:
            raise CliError(
                f"cannot reach the state manager at {self.server} ({exc or 'connection failed'}): "
                "is `exosphere server` running? Set --server or EXOSPHERE_STATE_MANAGER_URI"
            ) from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise CliError(f"invalid server address {self.server!r}: {exc}", EXIT_USAGE) from exc
        except httpx.HTTPError as exc:
            raise CliError(f"request to the state manager at {self.server} failed: {exc}") from exc
        if response.is_success:
            try:
                return response.json()
            except ValueError as exc:
                raise CliError(f"{self.server} answered {method} {path} with something that is not JSON") from exc
        raise self._error(response, method, path)

    def _error(self, response: httpx.Response, method: str, path: str) -> ApiError:
        status = response.status_code
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        if status == 401:
            message = f"the state manager at {self.server} refused the API key: pass --key or set EXOSPHERE_API_KEY"
        elif status == 404 and detail in (None, "Not Found"):
            # FastAPI's answer for an unknown route: probably not an Exosphere server, or an older one.
            message = f"{self.server} has no endpoint {method} {path}: is it an Exosphere state manager?"
        elif status == 422:
            message = "invalid request: " + "; ".join(describe_validation_errors(detail))
        elif status >= 500:
            message = f"the state manager failed (HTTP {status}): {detail or response.reason_phrase}"
        else:
            message = str(detail) if detail else f"HTTP {status} {response.reason_phrase}"
        return ApiError(" ".join(message.split()), status, detail)
