"""Code written for the original `exospherehost` SDK imports and catches what it did there."""

from __future__ import annotations

import importlib

import pytest
from exospherehost import (
    ApiError,
    AuthenticationError,
    BaseNode,
    ConflictError,
    NotFoundError,
    Runtime,
    ServerUnavailableError,
    StateManager,
)
from fake_server import FakeServer, Reply


def test_the_original_module_paths_import_the_same_objects() -> None:
    assert importlib.import_module("exospherehost.statemanager").StateManager is StateManager
    assert importlib.import_module("exospherehost.node.BaseNode").BaseNode is BaseNode
    assert importlib.import_module("exospherehost.node").BaseNode is BaseNode
    version = importlib.import_module("exospherehost._version").version
    assert isinstance(version, str) and version


@pytest.mark.parametrize("error", [ApiError, AuthenticationError, NotFoundError, ConflictError, ServerUnavailableError])
def test_errors_the_original_raised_as_runtime_error_are_runtime_errors(error: type[Exception]) -> None:
    assert issubclass(error, RuntimeError)


async def test_a_refused_key_at_start_is_caught_by_except_runtime_error() -> None:
    async def refuse(_request: object) -> Reply:
        return Reply(401, {"detail": "Invalid API key"})

    class Echo(BaseNode):
        async def execute(self) -> None:
            return None

    server = FakeServer(refuse)  # type: ignore[arg-type]
    await server.start()
    try:
        task = Runtime("ns", "rt", [Echo], state_manager_uri=server.url, key="wrong").start()
        assert task is not None
        with pytest.raises(RuntimeError, match="Invalid API key"):
            await task
    finally:
        await server.stop()
