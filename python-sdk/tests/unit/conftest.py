from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

# pytest puts this directory on sys.path (no __init__.py here), so the helpers import directly.
from fake_server import FakeServer
from fake_state_manager import FakeStateManager


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("EXOSPHERE_STATE_MANAGER_URI", "EXOSPHERE_API_KEY", "EXOSPHERE_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EXOSPHERE_DISABLE_DEFAULT_LOGGING", "1")


@pytest_asyncio.fixture
async def state_manager() -> AsyncIterator[tuple[FakeStateManager, FakeServer]]:
    fake = FakeStateManager()
    server = FakeServer(fake.handle)
    await server.start()
    yield fake, server
    await server.stop()
