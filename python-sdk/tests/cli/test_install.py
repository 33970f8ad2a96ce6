"""The install story, for real: a fresh venv gets the SDK, then `exospherehost[cli]`, never the server.

pip installs from its cache (or PyPI) into a new virtual environment: about 15 s of CPU.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

from exospherehost._version import VERSION

SDK = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 600


def run(*command: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert not check or done.returncode == 0, done
    return done


def test_the_cli_extra_gives_exosphere_without_the_server(tmp_path: Path) -> None:
    # Built once from a copy, so that building leaves nothing in the source tree.
    source = tmp_path / "python-sdk"
    shutil.copytree(SDK, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, source, check=True)
    [wheel] = dist.glob("exospherehost-*.whl")
    # A bare venv; this process's pip installs into it (`--python`), which spares installing pip there.
    venv.create(tmp_path / "venv", with_pip=False)
    bin_dir = tmp_path / "venv" / "bin"
    pip = (sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--quiet", "--prefer-binary")

    # The SDK alone: `exosphere` is there, and says in one line what it needs.
    run(*pip, wheel, check=True)
    bare = run(bin_dir / "exosphere", "runs")
    assert bare.returncode == 2, bare
    assert bare.stderr.count("\n") == 1 and 'pip install "exospherehost[cli]"' in bare.stderr, bare.stderr

    run(*pip, f"{wheel}[cli]", check=True)
    helped = run(bin_dir / "exosphere", "--help")
    assert helped.returncode == 0, helped
    for command in ("server", "graph", "trigger", "runs", "run", "state"):
        assert command in helped.stdout
    server = run(bin_dir / "exosphere", "server", "--port", "8001")
    assert server.returncode == 2 and "pip install exosphere_server-" in server.stderr, server
    versions = run(bin_dir / "exosphere", "--version", check=True)
    assert versions.stdout == f"exospherehost {VERSION}\nexosphere-server not installed\n", versions
    # The client commands work: with nothing listening, they say so.
    down = run(bin_dir / "exosphere", "runs", "-n", "demo", "--server", "http://127.0.0.1:9")
    assert down.returncode == 3 and "cannot reach the state manager" in down.stderr, down

    for module in ("fastapi", "sqlalchemy", "uvicorn", "exosphere_server"):
        missing = run(bin_dir / "python", "-c", f"import {module}")
        assert missing.returncode != 0 and "ModuleNotFoundError" in missing.stderr, (module, missing)
