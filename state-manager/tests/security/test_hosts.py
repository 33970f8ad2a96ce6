"""Only the configured Host names are served (against DNS rebinding); a loopback server answers to
loopback names only, every path included."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from exosphere_testing import ServerProcess

PATHS = ("/health", "/v0/namespaces", "/metrics", "/dashboard/login")


def get(server: ServerProcess, path: str, host: str) -> httpx.Response:
    return httpx.get(server.url + path, headers={"host": host, "x-api-key": server.api_key})


@pytest.mark.parametrize("path", PATHS)
def test_a_foreign_host_name_is_a_400_naming_the_setting(server: ServerProcess, path: str) -> None:
    for host in ("rebound.attacker.example", f"rebound.attacker.example:{server.port}", "127.0.0.1.nip.io", ""):
        response = get(server, path, host)
        assert response.status_code == 400, (host, response.status_code)
        assert "EXOSPHERE_ALLOWED_HOSTS" in response.json()["detail"]


@pytest.mark.parametrize("path", PATHS)
def test_loopback_names_are_served(server: ServerProcess, path: str) -> None:
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "LocalHost", f"[::1]:{server.port}"):
        assert get(server, path, host).status_code == 200, host


def test_configured_hosts_replace_the_default(make_server: Callable[..., ServerProcess]) -> None:
    # 127.0.0.1 stays listed: the test harness itself asks for /health by that name.
    server = make_server(env={"EXOSPHERE_ALLOWED_HOSTS": "127.0.0.1, exo.internal, *.corp.example"})
    assert get(server, "/health", "exo.internal:8000").status_code == 200
    assert get(server, "/health", "a.b.corp.example").status_code == 200
    assert get(server, "/health", "corp.example.attacker.example").status_code == 400
    assert get(server, "/health", f"localhost:{server.port}").status_code == 400
