"""The systemd unit of docs/deployment.md: valid, and, where systemd runs, it starts and stops the server.

The unit is read from the guide itself, so the guide cannot drift from what is tested. Starting it
needs systemd as the init system; elsewhere (a container) that test is skipped, saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from exosphere_testing import TEST_API_KEY, TEST_SECRETS_KEY, free_port, sqlite_url, wait_until

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "deployment.md"
EXOSPHERE = Path(sys.executable).with_name("exosphere")


def unit_from_the_guide() -> str:
    match = re.search(r"<!-- systemd-unit[^>]*-->\n```ini\n(.*?)```", GUIDE.read_text(), re.S)
    assert match, "docs/deployment.md has no systemd unit block"
    return match.group(1)


def local_unit(env_file: Path) -> str:
    """The guide's unit with this machine's paths: this checkout's `exosphere`, a test environment file,
    and root as user (the `exosphere` account of the guide does not exist here)."""
    unit = unit_from_the_guide()
    unit = unit.replace("/opt/exosphere/bin/exosphere", str(EXOSPHERE))
    unit = unit.replace("/etc/exosphere/exosphere.env", str(env_file))
    unit = re.sub(r"^(User|Group)=.*\n", "", unit, flags=re.M)
    return unit.replace("ProtectHome=true", "ProtectHome=false")  # this checkout may live under /root


def test_the_guide_unit_starts_the_server_with_sigterm_as_its_stop() -> None:
    unit = unit_from_the_guide()
    assert "ExecStart=/opt/exosphere/bin/exosphere server --host 127.0.0.1 --port %i" in unit
    assert "KillSignal=SIGTERM" in unit and "EnvironmentFile=/etc/exosphere/exosphere.env" in unit


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_finds_nothing_wrong_with_the_unit(tmp_path: Path) -> None:
    env_file = tmp_path / "exosphere.env"
    env_file.write_text("")
    unit = tmp_path / "exosphere-test@.service"
    unit.write_text(local_unit(env_file))
    instance = tmp_path / "exosphere-test@8001.service"
    instance.symlink_to(unit)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(instance)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    problems = [line for line in done.stderr.splitlines() if "exosphere-test" in line]
    assert not problems, problems


def _systemd_is_running() -> bool:
    return Path("/run/systemd/system").is_dir()


@pytest.fixture
def installed_unit(tmp_path: Path) -> Iterator[str]:
    name = f"exosphere-test-{uuid.uuid4().hex[:8]}"
    env_file = tmp_path / "exosphere.env"
    env_file.write_text(
        f"STATE_MANAGER_SECRET={TEST_API_KEY}\nSECRETS_ENCRYPTION_KEY={TEST_SECRETS_KEY}\n"
        f"EXOSPHERE_DATABASE_URL={sqlite_url(tmp_path)}\n"
    )
    path = Path("/run/systemd/system") / f"{name}@.service"
    path.write_text(local_unit(env_file))
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    yield name
    subprocess.run(["systemctl", "stop", f"{name}@*"], check=False)
    path.unlink()
    subprocess.run(["systemctl", "daemon-reload"], check=False)


@pytest.mark.skipif(
    not _systemd_is_running(),
    reason=f"systemd is not the init system here (PID 1 is {Path('/proc/1/comm').read_text().strip()!r})",
)
@pytest.mark.skipif(os.geteuid() != 0, reason="installing a system unit needs root")
def test_the_unit_starts_serves_and_stops_cleanly(installed_unit: str) -> None:
    port = free_port()
    service = f"{installed_unit}@{port}.service"
    subprocess.run(["systemctl", "start", service], check=True, timeout=60)

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, what="the service to answer /health")
    subprocess.run(["systemctl", "stop", service], check=True, timeout=60)
    shown = subprocess.run(
        ["systemctl", "show", service, "--property=ActiveState,Result", "--value"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown == ["inactive", "success"], shown  # stopped by SIGTERM, counted as a clean stop
