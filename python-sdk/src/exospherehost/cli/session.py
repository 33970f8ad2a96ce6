"""One command's connection to the state manager: the SDK's `StateManager` and the loop it runs on.

The CLI has no HTTP client of its own; every request is a `StateManager` method.

Example::

    with Session("http://127.0.0.1:8000", key="k", namespace="demo") as session:
        graphs = session.run(session.sm.list_graphs())
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

from exospherehost.cli.errors import EXIT_USAGE, CliError, from_sdk_error
from exospherehost.errors import ExosphereError
from exospherehost.state_manager import StateManager

T = TypeVar("T")
DEFAULT_TIMEOUT_SECONDS = 30.0


class Session:
    """A `StateManager` for one namespace, whose calls run one after another on one event loop.

    Inside `with`, `run()` returns the SDK's answer or raises its typed error, so a command can
    handle the errors it expects (a 409 of `state retry`, say). Any SDK error that leaves the block
    becomes a one-line `CliError` (exit code and wording in errors.py).
    """

    def __init__(
        self, server: str, key: str | None, namespace: str | None, timeout: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        """`namespace` None: a command about no one namespace (`exosphere key ...`)."""
        server = server.strip().rstrip("/")
        if not server.startswith(("http://", "https://")):
            raise CliError(f"invalid server address {server!r}: use e.g. http://127.0.0.1:8000", EXIT_USAGE)
        if namespace is not None and not namespace.strip():
            raise CliError("no namespace: pass --namespace or set EXOSPHERE_NAMESPACE", EXIT_USAGE)
        self.server = server
        self.namespace = namespace or ""
        self.timeout = timeout
        # One attempt per request: a person (or a script) learns of a failure at once and decides
        # whether to run the command again, rather than waiting through the SDK's retries.
        self.sm = StateManager(self.namespace, state_manager_uri=server, key=key, timeout=timeout, attempts=1)
        self._runner = asyncio.Runner()

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        """Run one SDK call (or a coroutine making several) to its end and return its result."""
        return self._runner.run(call)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._runner.run(self.sm.aclose())
        finally:
            self._runner.close()
        if isinstance(exc, ExosphereError):
            raise from_sdk_error(exc, self.server, self.timeout) from exc
