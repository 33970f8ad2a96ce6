"""Installing the server adds `exosphere server` to the SDK's `exosphere` (entry point exospherehost.cli_plugins)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from exosphere_server.cli import server as server_module


def test_the_server_package_declares_the_server_command() -> None:
    [plugin] = [ep for ep in entry_points(group="exospherehost.cli_plugins") if ep.name == "server"]
    assert plugin.load() is server_module.server


def test_exosphere_server_is_the_servers_command_through_every_way_in() -> None:
    console_script = Path(sys.executable).with_name("exosphere")
    for command in (
        [str(console_script)],
        [sys.executable, "-m", "exospherehost.cli"],
        [sys.executable, "-m", "exosphere_server"],  # the old module path keeps working
    ):
        done = subprocess.run([*command, "server", "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (command, done.stderr)
        assert "--database-url" in done.stdout and "Start the state manager" in done.stdout
